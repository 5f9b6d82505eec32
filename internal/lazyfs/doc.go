// Package lazyfs is a FUSE file system for power-loss tests: a loopback
// over a directory that, like Jepsen's LazyFS, can forget every write that
// was not fsynced, as a machine that lost power would.
//
// Writes reach the directory at once, so the processes using the mount see
// a normal file system, but lazyfs keeps what each write overwrote (and the
// size the file had) until the file is fsynced. PowerLoss unmounts, puts
// back what the unsynced writes overwrote, newest first, and mounts again
// with cold caches. It models file data only: creates, renames and unlinks
// survive, as they do on a journalled file system that orders metadata
// after data (ext4's default). Test support: it runs only as root (it
// mounts with mount(2)), and a test that cannot mount should say so.
package lazyfs
