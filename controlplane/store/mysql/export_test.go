package mysql

// LockName is the name of the migration lock of a database.
var LockName = lockName
