package encryption

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage"
)

// Rotation: a new KEK version is recorded (the newest is the one new data
// keys are wrapped with, on every node once its next Check has seen it),
// then every data key wrapped with an older version is unwrapped and
// wrapped again with it, row by row, each a compare-and-set on the version
// it read. Content is not touched, and reads go on meanwhile: a data key
// is the same whichever version wraps it.

// ErrVersionNotNewer means a rotation named a version that is not newer
// than the current one.
var ErrVersionNotNewer = errors.New("the key version is not newer than the current one")

// Rotate records a new KEK version and returns it: version v of the
// provider if v > 0 (added to the key file, or made in the HSM, by the
// operator beforehand: with several nodes, each must hold it), otherwise
// one the provider makes now. Rewrap then moves the data keys to it.
func (k *Keyring) Rotate(ctx context.Context, v int) (int, error) {
	if err := k.Err(); err != nil {
		return 0, err
	}
	k.mu.Lock()
	current := k.current
	k.mu.Unlock()
	if v == 0 {
		nv, err := k.p.NewVersion(ctx)
		if err != nil {
			return 0, k.unavailable(err)
		}
		v = nv
	}
	if v <= current {
		return 0, fmt.Errorf("%w: version %d, current %d", ErrVersionNotNewer, v, current)
	}
	if err := k.record(ctx, v); err != nil {
		return 0, k.unavailable(err)
	}
	if err := k.Check(ctx); err != nil {
		return 0, err
	}
	return v, nil
}

// Rewrap wraps every data key of an older KEK version with the current
// one, and returns how many it rewrapped. It is resumable: what is left
// is what the database still holds under older versions.
func (k *Keyring) Rewrap(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := k.Err(); err != nil {
			return total, err
		}
		k.mu.Lock()
		current := k.current
		k.mu.Unlock()
		rows, err := k.db.R().QueryContext(ctx, `SELECT digest, kek_version, wrapped FROM encryption_data_keys WHERE kek_version < ? ORDER BY kek_version, digest LIMIT 256`, current)
		if err != nil {
			return total, fmt.Errorf("list data keys: %w", err)
		}
		type row struct {
			d digest.Digest
			v int
			w []byte
		}
		var batch []row
		for rows.Next() {
			var r row
			var d string
			if err := rows.Scan(&d, &r.v, &r.w); err != nil {
				rows.Close()
				return total, err
			}
			r.d = digest.Digest(d)
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, err
		}
		if len(batch) == 0 {
			return total, nil
		}
		to, err := k.aead(ctx, current)
		if err != nil {
			return total, k.unavailable(err)
		}
		for _, r := range batch {
			from, err := k.aead(ctx, r.v)
			if err != nil {
				return total, k.unavailable(fmt.Errorf("key version %d: %w", r.v, err))
			}
			dek, err := open(from, r.w, dataKeyAAD(r.d))
			if err != nil {
				return total, fmt.Errorf("unwrap data key of %s (key version %d): %w", r.d, r.v, ErrTampered)
			}
			w, err := seal(to, dek, dataKeyAAD(r.d))
			if err != nil {
				return total, err
			}
			if _, err := k.db.W().ExecContext(ctx, `UPDATE encryption_data_keys SET kek_version = ?, wrapped = ? WHERE digest = ? AND kek_version = ?`,
				current, w, string(r.d), r.v); err != nil {
				return total, fmt.Errorf("rewrap data key of %s: %w", r.d, err)
			}
			total++
		}
	}
}

// VersionStatus is one KEK version and how many data keys it wraps.
type VersionStatus struct {
	Version   int       `json:"version"`
	DataKeys  int64     `json:"dataKeys"`
	CreatedAt time.Time `json:"createdAt"`
}

// EncryptProgress is the progress of encrypting the content stored before
// encryption was turned on.
type EncryptProgress struct {
	// Done is true once every blob stored before was encrypted.
	Done bool `json:"done"`
	// Cursor is the last blob the walk finished (it goes on after it).
	Cursor    string    `json:"cursor,omitempty"`
	Checked   int64     `json:"checked"`
	Encrypted int64     `json:"encrypted"`
	Bytes     int64     `json:"bytes"`
	Failed    int64     `json:"failed"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Status is what `berth encryption status` shows.
type Status struct {
	Enabled   bool   `json:"enabled"`
	KeyID     string `json:"keyId,omitempty"`
	Provider  string `json:"provider,omitempty"`
	Version   int    `json:"version,omitempty"`
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
	// Versions lists every recorded KEK version, newest last, with its
	// data keys: a rotation is done when only the newest has any.
	Versions []VersionStatus `json:"versions,omitempty"`
	// Rewrapping counts the data keys still wrapped with older versions.
	Rewrapping int64            `json:"rewrapping"`
	Existing   *EncryptProgress `json:"existingContent,omitempty"`
}

const encryptJob = "encrypt-existing"

// Status reports the key, its versions and the background work.
func (k *Keyring) Status(ctx context.Context) (Status, error) {
	st := Status{Enabled: true, KeyID: k.p.ID(), Provider: providerKind(k.p)}
	k.mu.Lock()
	st.Version = k.current
	if k.err != nil {
		st.Error = k.err.Error()
	}
	k.mu.Unlock()
	st.Available = st.Error == ""
	rows, err := k.db.R().QueryContext(ctx, `SELECT k.version, k.created_at, (SELECT count(*) FROM encryption_data_keys d WHERE d.kek_version = k.version)
		FROM encryption_kek k ORDER BY k.version`)
	if err != nil {
		return st, fmt.Errorf("read key versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v VersionStatus
		var at int64
		if err := rows.Scan(&v.Version, &at, &v.DataKeys); err != nil {
			return st, err
		}
		v.CreatedAt = time.UnixMilli(at).UTC()
		st.Versions = append(st.Versions, v)
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	if n := len(st.Versions); n > 0 {
		st.Version = st.Versions[n-1].Version
		for _, v := range st.Versions[:n-1] {
			st.Rewrapping += v.DataKeys
		}
	}
	var p EncryptProgress
	ok, err := k.jobState(ctx, encryptJob, &p)
	if err != nil {
		return st, err
	}
	if ok {
		st.Existing = &p
	}
	return st, nil
}

func providerKind(p KeyProvider) string {
	switch p.(type) {
	case *KeyFile:
		return "file"
	default:
		return "pkcs11"
	}
}

// EncryptExisting seals every blob that is stored as plain content (from
// before encryption was turned on), in digest order, recording its
// progress after each blob so that it goes on where it stopped, on this
// node or another. Content written meanwhile is sealed as it is written.
// A blob that fails (its content does not match its digest: damaged) is
// counted, logged and left for fsck.
func (b *Blobs) EncryptExisting(ctx context.Context) error {
	k := b.keys
	var p EncryptProgress
	if _, err := k.jobState(ctx, encryptJob, &p); err != nil {
		return err
	}
	if p.Done {
		return nil
	}
	if p.StartedAt.IsZero() {
		p.StartedAt = k.now().UTC()
	}
	// The walk's order is the stores' (by algorithm, then digest), but a
	// sorted list makes the cursor independent of it.
	var todo []digest.Digest
	if err := b.inner.Walk(ctx, func(info storage.BlobInfo) error {
		if string(info.Digest) > p.Cursor {
			todo = append(todo, info.Digest)
		}
		return nil
	}); err != nil {
		return err
	}
	slices.Sort(todo)
	save := func() error {
		p.UpdatedAt = k.now().UTC()
		return k.saveJob(context.WithoutCancel(ctx), encryptJob, &p)
	}
	for _, d := range todo {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := k.Err(); err != nil {
			return err
		}
		n, err := b.encryptOne(ctx, d)
		switch {
		case err == nil:
			if n >= 0 {
				p.Encrypted++
				p.Bytes += n
			}
		case errors.Is(err, storage.ErrBlobNotFound):
		case errors.Is(err, storage.ErrDigestMismatch):
			p.Failed++
			k.log.Error("a stored blob does not match its digest: left as it is, for fsck", "digest", d)
		default:
			return err
		}
		p.Checked++
		p.Cursor = string(d)
		if err := save(); err != nil {
			return err
		}
	}
	p.Done = true
	return save()
}

// encryptOne seals blob d if it is stored as plain content, and returns
// its size, or -1 if it was sealed already.
func (b *Blobs) encryptOne(ctx context.Context, d digest.Digest) (int64, error) {
	src, err := b.inner.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	_, sealed, _, err := readHeader(src)
	if err != nil {
		return 0, fmt.Errorf("read blob %s: %w", d, err)
	}
	if sealed {
		return -1, nil
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// The inner store writes the sealed form beside the plain one and puts
	// it in its place once the content verified.
	return b.inner.PutSized(ctx, d, -1, src)
}
