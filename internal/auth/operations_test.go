package auth

import (
	"errors"
	"strings"
	"testing"
)

// operationMatrix is the permission matrix of the operations, written out
// as the docs state it: each operation and the grants that allow it (any
// one of them suffices). It is kept apart from the operations table on
// purpose, so that a change to the table shows up as a failing row here.
var operationMatrix = []struct {
	op        Operation
	allowedBy []Actions
}{
	{OpPull, []Actions{ContentRead}},
	{OpPush, []Actions{ContentWrite}},
	{OpReadUpload, []Actions{ContentWrite, ContentRead}},
	{OpCancelUpload, []Actions{ContentWrite, ContentDelete}},
	{OpReadMetadata, []Actions{MetadataRead}},
	{OpUntag, []Actions{MetadataWrite, ContentDelete}},
	{OpDeleteManifest, []Actions{ContentDelete}},
	{OpDeleteBlob, []Actions{ContentDelete}},
	{OpDeleteRepository, []Actions{ContentDelete}},
	{OpWriteAttributes, []Actions{MetadataWrite}},
	{OpOverwriteTag, []Actions{ContentWrite | ContentOverwrite}},
}

// TestOperationMatrix runs every operation against every one of the 32
// 64 sets of scope-map actions a token can be granted on a repository, and
// against each role, and compares the decision with the matrix.
func TestOperationMatrix(t *testing.T) {
	if len(operationMatrix) != len(Operations()) {
		t.Fatalf("the matrix has %d operations, the table %d: add the new ones here", len(operationMatrix), len(Operations()))
	}
	for _, row := range operationMatrix {
		want := func(granted Actions) bool {
			for _, a := range row.allowedBy {
				if granted.Has(a) {
					return true
				}
			}
			return false
		}
		for granted := NoActions; granted <= AllActions; granted++ {
			var grants []string
			for _, name := range granted.ScopeMapNames() {
				grants = append(grants, "repositories/team/app/"+name)
			}
			id := Identity{Kind: KindToken, Name: "tok", Policy: MustCompile(scopeMap("m", grants...))}
			if got := Permits(id, "team/app", row.op); got != want(granted) {
				t.Errorf("%s with %v: allowed=%t, want %t", row.op, granted, got, want(granted))
			}
			err := CheckOperation(id, "team/app", row.op)
			if (err == nil) != want(granted) {
				t.Errorf("CheckOperation(%s with %v) = %v", row.op, granted, err)
			}
			// Nothing is granted on another repository.
			if Permits(id, "team/other", row.op) {
				t.Errorf("%s with %v on team/app allowed on team/other", row.op, granted)
			}
		}
		for _, r := range Roles() {
			id := Identity{Kind: KindUser, Name: "alice", Role: r}
			if got := Permits(id, "any/repo", row.op); got != want(r.Actions()) {
				t.Errorf("%s by role %s: allowed=%t, want %t", row.op, r, got, want(r.Actions()))
			}
		}
		if !Permits(Identity{Kind: KindAdmin, Name: "berth"}, "any/repo", row.op) {
			t.Errorf("%s refused to the admin user", row.op)
		}
		if Permits(Identity{}, "any/repo", row.op) {
			t.Errorf("%s allowed to an anonymous caller", row.op)
		}
		if Permits(Identity{Kind: KindAdmin, Name: "berth"}, "Not/A/Name", row.op) {
			t.Errorf("%s allowed on an invalid repository name", row.op)
		}
	}
	if Permits(Identity{Kind: KindAdmin, Name: "berth"}, "team/app", Operation(0)) ||
		Permits(Identity{Kind: KindAdmin, Name: "berth"}, "team/app", Operation(200)) {
		t.Error("an unknown operation is allowed")
	}
}

// TestOperationNarrowedByAccessToken: an access token grants an operation
// only if its access claim holds the actions.
func TestOperationNarrowedByAccessToken(t *testing.T) {
	id := Identity{Kind: KindUser, Name: "alice", Role: RoleOwner,
		Bearer: &Claims{Access: []Access{{Type: "repository", Name: "team/app", Actions: []string{"delete"}}}}}
	if !Permits(id, "team/app", OpUntag) {
		t.Error("untag refused with delete in the access token")
	}
	if Permits(id, "team/app", OpWriteAttributes) {
		t.Error("attributes changed without metadata_write in the access token")
	}
}

func TestOperationDeniedMessage(t *testing.T) {
	id := Identity{Kind: KindToken, Name: "ci", Policy: MustCompile(scopeMap("m", "repositories/team/app/content/read"))}
	err := CheckOperation(id, "team/app", OpUntag)
	var denied *DeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("CheckOperation = %v, want a *DeniedError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `token "ci" lacks metadata/write (or content/delete) on repository "team/app"`) {
		t.Errorf("message %q does not name both ways to be allowed", msg)
	}
	if msg := CheckOperation(id, "team/app", OpDeleteRepository).Error(); !strings.Contains(msg, `lacks content/delete on`) {
		t.Errorf("message %q", msg)
	}
}
