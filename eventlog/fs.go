package eventlog

import "io/fs"

// mustSub narrows the embedded files to their folder; the folder is fixed
// at build time, so failing is a bug in this package.
func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
