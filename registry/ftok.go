package registry

import "github.com/usysv/usysv/kernel"

// Ftok is ftok(3): a SysV key from an existing file and a project byte,
// computed exactly as glibc does:
//
//	(st_ino & 0xffff) | ((st_dev & 0xff) << 16) | (proj << 24)
//
// Like glibc's, the value can collide for different files (only 16 bits of
// the inode and 8 of the device are used). A missing file gives the
// stat(2) errno.
func Ftok(path string, proj byte) (int, error) {
	dev, ino, err := kernel.StatDevIno(path)
	if err != nil {
		return -1, err
	}
	return int(int32(uint32(ino&0xffff) | uint32(dev&0xff)<<16 | uint32(proj)<<24)), nil
}
