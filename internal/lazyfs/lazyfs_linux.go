package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FS is a mounted lazy file system.
type FS struct {
	backing, mountpoint string

	mu     sync.Mutex
	server *fuse.Server
	undo   []undo              // unsynced writes, oldest first
	files  map[fileID]*os.File // a descriptor per file with unsynced writes, to undo them whatever its name now
	stats  Stats
}

// Stats says how much the power losses so far took away.
type Stats struct {
	PowerLosses   int
	WritesDropped int   // unsynced writes undone
	BytesDropped  int64 // bytes those writes had put in place
	Fsyncs        int
}

type fileID struct{ dev, ino uint64 }

// undo puts back what one write or truncate changed.
type undo struct {
	file fileID
	off  int64
	old  []byte // what the write overwrote (shorter when it wrote past the end)
	size int64  // the file's size before it
	n    int    // bytes written
}

// Mount serves backing at mountpoint, both existing directories. Unmount
// it when done.
func Mount(backing, mountpoint string) (*FS, error) {
	f := &FS{backing: backing, mountpoint: mountpoint, files: map[fileID]*os.File{}}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	root, err := fs.NewLoopbackRoot(f.backing)
	if err != nil {
		return fmt.Errorf("lazyfs: %w", err)
	}
	lazyRoot := &node{LoopbackNode: root.(*fs.LoopbackNode), fs: f}
	f.server, err = fs.Mount(f.mountpoint, lazyRoot, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "lazyfs", Name: "lazyfs", DirectMountStrict: true,
			// Another user (the worker may drop privileges) reaches it.
			AllowOther: true,
		},
	})
	if err != nil {
		return fmt.Errorf("lazyfs: mount %s: %w", f.mountpoint, err)
	}
	return nil
}

// Unmount stops serving the mount point. Unsynced writes stay written.
func (f *FS) Unmount() error {
	err := f.unmount()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forget()
	return err
}

// unmount detaches the mount even while files are open on it (a test that
// failed half-way), so that the serving process can exit.
func (f *FS) unmount() error {
	if err := f.server.Unmount(); err != nil {
		if derr := unix.Unmount(f.mountpoint, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("lazyfs: unmount %s: %w", f.mountpoint, errors.Join(err, derr))
		}
	}
	f.server.Wait()
	return nil
}

// PowerLoss unmounts, undoes every write not fsynced since it was made, and
// mounts again. Whoever had files open must be gone (killed) first: the
// unmount waits for them.
func (f *FS) PowerLoss() (Stats, error) {
	if err := f.server.Unmount(); err != nil {
		return Stats{}, fmt.Errorf("lazyfs: unmount %s (is a process still using it?): %w", f.mountpoint, err)
	}
	f.server.Wait()
	f.mu.Lock()
	var errs []error
	for i := len(f.undo) - 1; i >= 0; i-- {
		u := f.undo[i]
		file := f.files[u.file]
		if _, err := file.WriteAt(u.old, u.off); err != nil {
			errs = append(errs, err)
		}
		if err := file.Truncate(u.size); err != nil {
			errs = append(errs, err)
		}
		f.stats.WritesDropped++
		f.stats.BytesDropped += int64(u.n)
	}
	f.stats.PowerLosses++
	f.forget()
	stats := f.stats
	f.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return stats, fmt.Errorf("lazyfs: undo unsynced writes: %w", err)
	}
	return stats, f.mount()
}

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// forget drops the undo log. f.mu is held.
func (f *FS) forget() {
	for _, file := range f.files {
		file.Close()
	}
	f.undo, f.files = nil, map[fileID]*os.File{}
}

// record notes what writing n bytes at off over fd is about to change.
func (f *FS) record(fd int, off int64, n int) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	id := fileID{uint64(st.Dev), st.Ino}
	f.mu.Lock()
	defer f.mu.Unlock()
	file, ok := f.files[id]
	if !ok {
		// fd may be write-only, and PowerLoss must write even after a
		// rename: open the file itself again, for both.
		var err error
		if file, err = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR, 0); err != nil {
			return fs.ToErrno(err)
		}
		f.files[id] = file
	}
	old := []byte{}
	if off < st.Size {
		old = make([]byte, min(int64(n), st.Size-off))
		if _, err := file.ReadAt(old, off); err != nil {
			return fs.ToErrno(err)
		}
	}
	f.undo = append(f.undo, undo{file: id, off: off, old: old, size: st.Size, n: n})
	return 0
}

// synced drops the undo records of the file behind fd: they are on disk.
func (f *FS) synced(fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return
	}
	id := fileID{uint64(st.Dev), st.Ino}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Fsyncs++
	kept := f.undo[:0]
	for _, u := range f.undo {
		if u.file != id {
			kept = append(kept, u)
		}
	}
	f.undo = kept
	if file, ok := f.files[id]; ok {
		file.Close()
		delete(f.files, id)
	}
}

// node is a loopback node whose files are lazy.
type node struct {
	*fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
)

func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), fs: n.fs}
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.wrap(fh), fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return inode, n.wrap(fh), fuseFlags, 0
}

// Setattr records a truncate made by path (ftruncate comes through the
// file handle) before making it.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if lf, isLazy := fh.(*file); isLazy {
			if errno := lf.recordTruncate(int64(size)); errno != 0 {
				return errno
			}
			fh = lf.lf
		} else {
			fd, err := unix.Open(filepath.Join(n.RootData.Path, n.Path(nil)), unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				return fs.ToErrno(err)
			}
			errno := recordTruncate(n.fs, fd, int64(size))
			unix.Close(fd)
			if errno != 0 {
				return errno
			}
		}
	} else if lf, isLazy := fh.(*file); isLazy {
		fh = lf.lf
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

func (n *node) wrap(fh fs.FileHandle) fs.FileHandle {
	lf := fh.(*fs.LoopbackFile)
	fd, _ := lf.PassthroughFd() // the descriptor only: the mount never passes reads and writes through
	return &file{lf: lf, fd: fd, fs: n.fs}
}

func recordTruncate(f *FS, fd int, size int64) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	if size >= st.Size {
		return f.record(fd, st.Size, 0) // growing: undo puts the size back
	}
	return f.record(fd, size, int(st.Size-size)) // shrinking: keep the cut-off tail
}

// file forwards to a loopback file, noting each write first. It does not
// embed the loopback file: that would offer its descriptor for kernel
// passthrough, and writes would no longer come here.
type file struct {
	lf *fs.LoopbackFile
	fd int
	fs *FS
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileSetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
	_ fs.FileGetlker   = (*file)(nil)
	_ fs.FileSetlker   = (*file)(nil)
	_ fs.FileSetlkwer  = (*file)(nil)
)

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.fs.record(f.fd, off, len(data)); errno != 0 {
		return 0, errno
	}
	return f.lf.Write(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	errno := f.lf.Fsync(ctx, flags)
	if errno == 0 {
		f.fs.synced(f.fd)
	}
	return errno
}

func (f *file) recordTruncate(size int64) syscall.Errno { return recordTruncate(f.fs, f.fd, size) }

func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := f.recordTruncate(int64(size)); errno != 0 {
			return errno
		}
	}
	return f.lf.Setattr(ctx, in, out)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	// fallocate may grow the file: let undo put the size back.
	if errno := f.fs.record(f.fd, int64(off), 0); errno != 0 {
		return errno
	}
	return f.lf.Allocate(ctx, off, size, mode)
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}
func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.lf.Getlk(ctx, owner, lk, flags, out)
}
func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlk(ctx, owner, lk, flags)
}
func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlkw(ctx, owner, lk, flags)
}
