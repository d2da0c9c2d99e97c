package auth

import "fmt"

// Operation is something a caller does to one repository, whichever face it
// comes through: the registry (/v2/), the REST API or the portal. The faces
// ask for an operation, never for actions, so that which actions an
// operation needs is written once, in operations, and the faces cannot give
// different answers (as they once did for untagging).
type Operation uint8

// The operations on a repository. The zero value is no operation and is
// never allowed.
const (
	// OpPull reads manifests, blobs and the referrers list.
	OpPull Operation = iota + 1
	// OpPush pushes manifests and blobs (and starts and continues uploads).
	OpPush
	// OpReadUpload reads the status of an upload session.
	OpReadUpload
	// OpCancelUpload cancels an upload session.
	OpCancelUpload
	// OpReadMetadata lists tags and manifests and reads a repository's,
	// tag's or manifest's record and attributes.
	OpReadMetadata
	// OpUntag removes a tag and leaves the manifest it pointed at.
	OpUntag
	// OpDeleteManifest deletes a manifest (and the tags pointing at it).
	OpDeleteManifest
	// OpDeleteBlob deletes a blob from a repository.
	OpDeleteBlob
	// OpDeleteRepository deletes a repository with everything in it.
	OpDeleteRepository
	// OpWriteAttributes changes the attributes (readEnabled, writeEnabled,
	// deleteEnabled, listEnabled) of a repository or a manifest.
	OpWriteAttributes
	// OpOverwriteTag moves an existing tag to another manifest (a push of
	// a tag that points elsewhere); creating a tag is OpPush.
	OpOverwriteTag
)

// operations is the one table of what each operation needs: every action
// of need, or else every action of or. It is an array indexed by the
// operation, so it cannot be changed at run time.
var operations = [...]struct {
	name string  // for messages: "untag"
	does string  // what it allows, in words, for the portal
	need Actions // all of these ...
	or   Actions // ... or else all of these (NoActions: no alternative)
}{
	OpPull:       {"pull", "pull images and artifacts", ContentRead, NoActions},
	OpPush:       {"push", "push images and artifacts", ContentWrite, NoActions},
	OpReadUpload: {"read upload", "read the status of an upload", ContentWrite, ContentRead},
	// Clients that keep one token per kind of request (the OCI conformance
	// suite among them) read an upload's status with their pull token and
	// cancel it with their delete token. Upload IDs are 128 random bits, so
	// neither reveals or touches anything of another caller's.
	OpCancelUpload:     {"cancel upload", "cancel an upload", ContentWrite, ContentDelete},
	OpReadMetadata:     {"read metadata", "list tags and manifests and see attributes", MetadataRead, NoActions},
	OpUntag:            {"untag", "remove tags", MetadataWrite, ContentDelete},
	OpDeleteManifest:   {"delete manifest", "delete manifests", ContentDelete, NoActions},
	OpDeleteBlob:       {"delete blob", "delete blobs", ContentDelete, NoActions},
	OpDeleteRepository: {"delete repository", "delete the repository", ContentDelete, NoActions},
	OpWriteAttributes:  {"change attributes", "lock and unlock the repository and its manifests (attributes)", MetadataWrite, NoActions},
	OpOverwriteTag:     {"overwrite tag", "move existing tags to other manifests", ContentWrite | ContentOverwrite, NoActions},
}

// Operations returns every operation, in the order of the table.
func Operations() []Operation {
	out := make([]Operation, 0, len(operations)-1)
	for op := OpPull; int(op) < len(operations); op++ {
		out = append(out, op)
	}
	return out
}

func (op Operation) valid() bool { return op != 0 && int(op) < len(operations) }

// String names the operation, as in "untag".
func (op Operation) String() string {
	if !op.valid() {
		return fmt.Sprintf("Operation(%d)", op)
	}
	return operations[op].name
}

// Describe says in words what being allowed the operation lets one do,
// as in "remove tags", for pages that list a caller's rights.
func (op Operation) Describe() string {
	if !op.valid() {
		return ""
	}
	return operations[op].does
}

// Needs returns the actions op needs: all of need, or else all of or (or
// is NoActions when there is no alternative). An unknown operation needs
// nothing and is never allowed.
func (op Operation) Needs() (need, or Actions) {
	if !op.valid() {
		return NoActions, NoActions
	}
	return operations[op].need, operations[op].or
}

// AllowedBy reports whether a caller granted the actions granted may
// perform op.
func (op Operation) AllowedBy(granted Actions) bool {
	need, or := op.Needs()
	return (need != NoActions && granted.Has(need)) || (or != NoActions && granted.Has(or))
}

// Permits is the access decision for an operation: may id perform op on
// repository repo? Every face of berth asks it (or CheckOperation) for
// everything done to a repository.
func Permits(id Identity, repo string, op Operation) bool {
	return op.AllowedBy(allowedFor(id, repo, op))
}

// wholeRepository marks the operations that act on a repository as a
// whole rather than on tags: a grant limited to some tags does not allow
// them, or a token limited to dev-* tags could delete the layers, lock or
// delete the repository of v1.
func (op Operation) wholeRepository() bool {
	return op == OpDeleteBlob || op == OpDeleteRepository || op == OpWriteAttributes
}

// allowedFor is what id holds on repo for deciding op: for operations on
// the whole repository only what it holds on every tag.
func allowedFor(id Identity, repo string, op Operation) Actions {
	if op.wholeRepository() {
		every, _ := everyTag(id, repo)
		return every
	}
	return Allowed(id, repo)
}

// CheckOperation is Permits returning an error for the handlers: nil, or a
// *DeniedError that names the identity, the repository and what is missing.
func CheckOperation(id Identity, repo string, op Operation) error {
	allowed := allowedFor(id, repo, op)
	if op.AllowedBy(allowed) {
		return nil
	}
	need, or := op.Needs()
	return &DeniedError{Identity: id, Repository: repo, Missing: need &^ allowed, Or: or,
		SomeTags: (need | or) & Allowed(id, repo) &^ allowed}
}

// PermittedOperations lists the operations id may perform on repo, for
// pages that show a caller what it may do.
func PermittedOperations(id Identity, repo string) []Operation {
	var out []Operation
	for _, op := range Operations() {
		if op.AllowedBy(allowedFor(id, repo, op)) {
			out = append(out, op)
		}
	}
	return out
}

// permissionTexts says in words what each management right allows, for
// pages that list a user's rights.
var permissionTexts = [...]struct {
	p    Permission
	does string
}{
	{ViewManagement, "see scope maps, tokens, users and the admin user"},
	{ManageTokens, "create, change and delete scope maps and tokens"},
	{ManageUsers, "manage users and their roles"},
	{ManageRegistry, "manage the admin user and run garbage collection"},
	{ReadAudit, "read the audit log"},
	{WriteRepositories, "change repositories in bulk"},
}

// Describe says in words what the rights in p allow, one phrase per
// right, in a fixed order.
func (p Permission) Describe() []string {
	var out []string
	for _, t := range permissionTexts {
		if p&t.p != 0 {
			out = append(out, t.does)
		}
	}
	return out
}
