// Package fsck checks the content store against itself and the metadata:
// every blob file's content against its digest, every blob link against
// the files, and every manifest's config and layers against the links and
// files. Damaged files can be moved into quarantine, after which the blob
// reads as not stored and the next push of it restores it. The same
// verification runs slowly and forever as the background scrub.
package fsck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/meta"
	"github.com/berth-registry/berth/internal/storage"
)

// Store is what checking needs of the content store.
type Store interface {
	Walk(ctx context.Context, fn func(storage.BlobInfo) error) error
	StatBlob(ctx context.Context, d digest.Digest) (storage.BlobInfo, error)
	ReadBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, storage.BlobInfo, error)
	Quarantine(ctx context.Context, b storage.BlobInfo, why storage.Damage) (bool, error)
	Quarantined(ctx context.Context) ([]storage.QuarantinedBlob, error)
}

// Metadata is what checking needs of the metadata store.
type Metadata interface {
	WalkBlobLinks(ctx context.Context, fn func(meta.BlobLink) error) error
	WalkManifests(ctx context.Context, fn func(repo string, m meta.Manifest) error) error
	WalkTags(ctx context.Context, fn func(repo, tag string, d digest.Digest) error) error
}

// Options configure one check.
type Options struct {
	// Repair moves damaged blob files into quarantine.
	Repair bool
	// OnDamage, when set, is told of each damaged blob file found (metrics).
	OnDamage func(storage.Damage)
	Now      func() time.Time
}

// Report is what a check found.
type Report struct {
	Repair           bool             `json:"repair"`
	BlobsChecked     int              `json:"blobsChecked"`
	BytesChecked     int64            `json:"bytesChecked"`
	ManifestsChecked int              `json:"manifestsChecked"`
	DamagedBlobs     []DamagedBlob    `json:"damagedBlobs"`
	MissingBlobs     []MissingBlob    `json:"missingBlobs"`
	BrokenManifests  []BrokenManifest `json:"brokenManifests"`
	Duration         string           `json:"duration"`
}

// Problems counts what the report says is wrong.
func (r Report) Problems() int {
	return len(r.DamagedBlobs) + len(r.MissingBlobs) + len(r.BrokenManifests)
}

// Manifest names one manifest.
type Manifest struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Tags       []string      `json:"tags,omitempty"`
}

func (m Manifest) String() string {
	if len(m.Tags) > 0 {
		return m.Repository + ":" + strings.Join(m.Tags, ",")
	}
	return m.Repository + "@" + m.Digest.String()
}

// DamagedBlob is a blob file whose content does not match its digest.
type DamagedBlob struct {
	Digest digest.Digest `json:"digest"`
	// Size is the file's; ExpectedSize was recorded when the blob was
	// pushed (0 if no repository links it).
	Size         int64 `json:"size"`
	ExpectedSize int64 `json:"expectedSize"`
	// ActualDigest is what the file's content hashes to.
	ActualDigest digest.Digest `json:"actualDigest"`
	// Quarantined says the file was moved aside (with repair).
	Quarantined bool `json:"quarantined"`
	// Repositories link the blob; Manifests refer to it.
	Repositories []string   `json:"repositories"`
	Manifests    []Manifest `json:"manifests"`
}

// MissingBlob is a blob that repositories link but whose content is not
// stored: quarantined and not pushed again since, or lost.
type MissingBlob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"` // recorded when it was pushed
	// Quarantined says a damaged copy waits in quarantine.
	Quarantined  bool       `json:"quarantined"`
	Repositories []string   `json:"repositories"`
	Manifests    []Manifest `json:"manifests"`
}

// BrokenManifest is a manifest whose config or layers cannot be pulled.
type BrokenManifest struct {
	Repository string             `json:"repository"`
	Digest     digest.Digest      `json:"digest"`
	Tags       []string           `json:"tags,omitempty"`
	Missing    []MissingReference `json:"missing"`
}

// MissingReference is one blob a manifest refers to that cannot be pulled.
type MissingReference struct {
	Digest digest.Digest `json:"digest"`
	// Problem is "not linked" (the repository does not have the blob),
	// "missing" (no content) or "damaged".
	Problem string `json:"problem"`
}

// blob is what the check knows of one digest.
type blob struct {
	size   int64 // recorded at push; 0 if not linked
	repos  []string
	users  []Manifest
	stored bool
	bad    bool
}

// Check runs one check. It only reads, except that with Repair damaged
// files are moved into quarantine. It is safe while the registry serves:
// files replaced by a push meanwhile are left alone, and content that
// seems missing is looked for again before it is reported.
func Check(ctx context.Context, md Metadata, st Store, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	r := Report{Repair: o.Repair, DamagedBlobs: []DamagedBlob{}, MissingBlobs: []MissingBlob{}, BrokenManifests: []BrokenManifest{}}
	blobs := map[digest.Digest]*blob{}
	get := func(d digest.Digest) *blob {
		b := blobs[d]
		if b == nil {
			b = &blob{}
			blobs[d] = b
		}
		return b
	}
	type link struct {
		repo string
		d    digest.Digest
	}
	linked := map[link]bool{}
	err := md.WalkBlobLinks(ctx, func(l meta.BlobLink) error {
		b := get(l.Digest)
		b.size = l.Size
		b.repos = append(b.repos, l.Repository)
		linked[link{l.Repository, l.Digest}] = true
		return nil
	})
	if err != nil {
		return r, err
	}
	tags := map[link][]string{}
	err = md.WalkTags(ctx, func(repo, tag string, d digest.Digest) error {
		tags[link{repo, d}] = append(tags[link{repo, d}], tag)
		return nil
	})
	if err != nil {
		return r, err
	}
	type manifestRefs struct {
		m    Manifest
		refs []digest.Digest
	}
	var manifests []manifestRefs
	err = md.WalkManifests(ctx, func(repo string, m meta.Manifest) error {
		mf := Manifest{Repository: repo, Digest: m.Digest, Tags: tags[link{repo, m.Digest}]}
		slices.Sort(mf.Tags)
		refs := References(m.Content)
		for _, d := range refs {
			b := get(d)
			b.users = append(b.users, mf)
		}
		manifests = append(manifests, manifestRefs{mf, refs})
		return nil
	})
	if err != nil {
		return r, err
	}
	r.ManifestsChecked = len(manifests)

	buf := make([]byte, 1<<20)
	err = st.Walk(ctx, func(info storage.BlobInfo) error {
		b := get(info.Digest)
		why, file, n, err := Verify(ctx, st, info.Digest, buf, nil)
		if errors.Is(err, storage.ErrBlobNotFound) {
			return nil // removed meanwhile (garbage collection)
		}
		if err != nil {
			return err
		}
		r.BlobsChecked++
		r.BytesChecked += n
		b.stored = true
		if why == nil {
			return nil
		}
		why.ExpectedSize, why.FoundBy = b.size, "fsck"
		if o.OnDamage != nil {
			o.OnDamage(*why)
		}
		repos, users := b.usersOf()
		db := DamagedBlob{Digest: why.Digest, Size: why.Size, ExpectedSize: why.ExpectedSize, ActualDigest: why.ActualDigest, Repositories: repos, Manifests: users}
		if o.Repair {
			moved, err := st.Quarantine(ctx, file, *why)
			if err != nil {
				return err
			}
			db.Quarantined = moved
			// Moved or replaced by a push meanwhile: no longer in place.
		}
		b.bad = true
		r.DamagedBlobs = append(r.DamagedBlobs, db)
		return nil
	})
	if err != nil {
		return r, err
	}

	quarantined := map[digest.Digest]bool{}
	if q, err := st.Quarantined(ctx); err == nil {
		for _, e := range q {
			quarantined[e.Digest] = true
		}
	}
	var missing []digest.Digest
	for d, b := range blobs {
		if b.stored || (len(b.repos) == 0 && len(b.users) == 0) {
			continue
		}
		// A push may have stored it after the scan passed its place.
		if _, err := st.StatBlob(ctx, d); err == nil {
			b.stored = true
			continue
		}
		missing = append(missing, d)
	}
	slices.Sort(missing)
	for _, d := range missing {
		b := blobs[d]
		if len(b.repos) == 0 {
			continue // only a manifest refers to it: reported with the manifest
		}
		repos, users := b.usersOf()
		r.MissingBlobs = append(r.MissingBlobs, MissingBlob{Digest: d, Size: b.size, Quarantined: quarantined[d], Repositories: repos, Manifests: users})
	}

	for _, m := range manifests {
		var miss []MissingReference
		for _, d := range m.refs {
			b := blobs[d]
			switch {
			case !linked[link{m.m.Repository, d}]:
				miss = append(miss, MissingReference{d, "not linked"})
			case b.bad:
				miss = append(miss, MissingReference{d, "damaged"})
			case !b.stored:
				miss = append(miss, MissingReference{d, "missing"})
			}
		}
		if len(miss) > 0 {
			r.BrokenManifests = append(r.BrokenManifests, BrokenManifest{Repository: m.m.Repository, Digest: m.m.Digest, Tags: m.m.Tags, Missing: miss})
		}
	}
	slices.SortFunc(r.DamagedBlobs, func(a, b DamagedBlob) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	slices.SortFunc(r.BrokenManifests, func(a, b BrokenManifest) int {
		return strings.Compare(a.Repository+"@"+string(a.Digest), b.Repository+"@"+string(b.Digest))
	})
	r.Duration = o.Now().Sub(start).Round(time.Millisecond).String()
	return r, nil
}

func (b *blob) usersOf() ([]string, []Manifest) {
	repos, users := slices.Clone(b.repos), slices.Clone(b.users)
	slices.Sort(repos)
	slices.SortFunc(users, func(a, b Manifest) int {
		return strings.Compare(a.Repository+"@"+string(a.Digest), b.Repository+"@"+string(b.Digest))
	})
	if repos == nil {
		repos = []string{}
	}
	if users == nil {
		users = []Manifest{}
	}
	return repos, users
}

// References returns the config and layers a stored manifest needs from
// its repository, as the registry required them at push: not an index's
// child manifests (an index may name platforms a mirror does not keep) and
// not non-distributable layers (their content lives elsewhere).
func References(content []byte) []digest.Digest {
	var doc struct {
		Config *descriptor  `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if json.Unmarshal(content, &doc) != nil {
		return nil
	}
	descs := doc.Layers
	if doc.Config != nil {
		descs = append([]descriptor{*doc.Config}, descs...)
	}
	var out []digest.Digest
	for _, d := range descs {
		if d.nonDistributable() || d.Digest.Validate() != nil || slices.Contains(out, d.Digest) {
			continue
		}
		out = append(out, d.Digest)
	}
	return out
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
}

func (d descriptor) nonDistributable() bool {
	return strings.Contains(d.MediaType, ".nondistributable.") || d.MediaType == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
}

// Verify reads blob d and hashes it. It returns what is wrong with it (nil
// if the content matches the digest), the file it read (to quarantine that
// one and no other) and how many bytes it read. pace, if set, is called
// after each chunk read, to slow reading down. buf is the read buffer.
func Verify(ctx context.Context, st Store, d digest.Digest, buf []byte, pace func(n int) error) (*storage.Damage, storage.BlobInfo, int64, error) {
	f, info, err := st.ReadBlob(ctx, d)
	if errors.Is(err, storage.ErrTampered) {
		return &storage.Damage{Digest: d, Size: info.Size}, info, 0, nil
	}
	if err != nil {
		return nil, info, 0, err
	}
	defer f.Close()
	h := d.Algorithm().Hash()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, info, n, err
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if pace != nil && k > 0 {
			if err := pace(k); err != nil {
				return nil, info, n, err
			}
		}
		if err == io.EOF {
			break
		}
		if errors.Is(err, storage.ErrTampered) {
			// Encrypted content that does not authenticate: damaged.
			return &storage.Damage{Digest: d, Size: info.Size}, info, n, nil
		}
		if err != nil {
			return nil, info, n, fmt.Errorf("read blob %s: %w", d, err)
		}
	}
	actual := digest.NewDigest(d.Algorithm(), h)
	if actual == d {
		return nil, info, n, nil
	}
	return &storage.Damage{Digest: d, Size: n, ActualDigest: actual}, info, n, nil
}
