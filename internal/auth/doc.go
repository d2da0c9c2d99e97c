// Package auth is the storage-free core of berth's authentication and
// authorisation: who a caller is, what they may do, and the credentials and
// tokens that prove it. It touches no database, network or file; the service
// layer loads state from the metadata store and hands it in, so every rule
// here is a pure function that a table-driven test can pin down.
//
// # The model
//
// A caller is an Identity of one of four kinds:
//
//   - anonymous: no credentials; granted nothing, unless the registry gives
//     anonymous callers a Policy (anonymous pull);
//   - token: a repository-scoped token, bound to exactly one scope map;
//   - admin: the registry-wide admin user, all actions on every repository;
//   - user: a person or automation account with a Role (owner, contributor,
//     reader, pull, push, delete), as in ACR's built-in roles.
//
// There are five data-plane actions, ACR's (Actions): content/read,
// content/write, content/delete, metadata/read and metadata/write. Inside
// Docker token scopes and JWT access claims they are spelled pull, push,
// delete, metadata_read and metadata_write.
//
// A ScopeMap is a named list of grants in ACR's stored form
// "repositories/<pattern>/<action>". A Pattern is an exact repository name
// ("team/app"), a prefix with one trailing wildcard ("team/*", every
// repository strictly below team/, at any depth), or "*". Grants add up over
// every matching rule. Compile turns a scope map into a Policy, which answers
// "what may be done on this repository" with a few map probes and no
// allocation. Five built-in scope maps (BuiltinScopeMaps) cover the common
// cases on "*".
//
// Decide is the one access decision: (identity, repository, actions wanted)
// → allowed, or which actions are missing. What each operation on a
// repository needs (pull, push, untag, delete, change attributes...) is one
// table, operations; Permits and CheckOperation decide an operation with
// it. Every face of berth (the registry, the token endpoint, the REST API,
// the portal) asks about operations; none decides on its own. Management rights (tokens and scope maps, users,
// registry settings, audit, registry-wide repository operations) belong to
// users by role only and are checked with CanManage.
//
// # Tokens on the wire
//
// A client asks the token endpoint for scopes ("repository:team/app:pull,push",
// parsed by ParseScopes); the endpoint authenticates it (MatchSecret for
// generated token and admin passwords, VerifyUserPassword for users, with the
// Limiter in front), grants the intersection of what was asked and what is
// allowed (Intersect), and signs an Ed25519 JWT with a Signer. The registry
// verifies it with a Verifier and puts its claims in Identity.Bearer, so that
// Decide grants the intersection of the token's access claim and what the
// identity may do now.
//
// Revocation is immediate without a database read per request: tokens carry
// the identity's kind, the password slot used and a generation number, which
// the service compares with an in-memory counter that it bumps whenever the
// identity is disabled or deleted, a password changes, or its scope map
// changes.
//
// # Secrets
//
// Generated passwords have 256 random bits and are stored as salted
// HMAC-SHA256 (HashSecret): guessing them is hopeless, so a fast hash is as
// safe as a slow one and Basic authentication on /v2/ stays cheap. Passwords
// that people choose are stored with argon2id (HashUserPassword). All
// comparisons are constant-time.
package auth
