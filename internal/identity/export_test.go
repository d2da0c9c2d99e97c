package identity

// MigrationsFor exposes the migration steps of each engine to the tests
// of earlier schema versions.
var MigrationsFor = migrations
