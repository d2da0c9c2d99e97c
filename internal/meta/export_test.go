package meta

// PostgresMigrations are the PostgreSQL schema's steps, for tests that build
// a database at an earlier version.
var PostgresMigrations = postgresMigrations
