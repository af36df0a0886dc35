package registry

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/kernel"
)

func TestPermitted(t *testing.T) {
	owner := Creds{UID: 100, GID: 100}
	creator := Creds{UID: 200, GID: 300}
	group := Creds{UID: 300, GID: 100}
	suppl := Creds{UID: 301, GID: 999, Groups: []uint32{5, 100}}
	cgroup := Creds{UID: 302, GID: 300}
	other := Creds{UID: 400, GID: 400, Groups: []uint32{7}}
	root := Creds{UID: 0, GID: 0, IPCOwner: true}
	rootNoCap := Creds{UID: 0, GID: 0}
	// Object: uid 100, gid 100, cuid 200, cgid 300.
	cases := []struct {
		c    Creds
		mode uint32
		want Access
		ok   bool
	}{
		{owner, 0o600, Read | Write, true},
		{owner, 0o400, Write, false},
		{owner, 0o066, Read, false}, // exclusive: owner bits only
		{creator, 0o400, Read, true},
		{creator, 0o066, Read, false},
		{group, 0o040, Read, true},
		{group, 0o604, Read, false}, // exclusive: group bits only
		{suppl, 0o020, Write, true},
		{suppl, 0o402, Write, false},
		{cgroup, 0o040, Read, true},
		{other, 0o004, Read, true},
		{other, 0o660, Read, false},
		{other, 0o006, Read | Write, true},
		{other, 0o004, Read | Write, false},
		{other, 0, 0, true}, // nothing asked, nothing needed
		{root, 0, Read | Write, true},
		{rootNoCap, 0, Read, false}, // uid 0 alone is not the capability
		{rootNoCap, 0o004, Read, true},
		{other, 0o001, Read, false}, // x is not r
	}
	for _, tc := range cases {
		assert.Equal(t, tc.ok, Permitted(tc.c, 100, 100, 200, 300, tc.mode, tc.want), "%+v mode %#o want %d", tc.c, tc.mode, tc.want)
	}
}

func TestRequestedAccess(t *testing.T) {
	for flags, want := range map[int]Access{
		0: 0, kernel.IPC_CREAT: 0, kernel.IPC_CREAT | kernel.IPC_EXCL: 0,
		0o400: Read, 0o040: Read, 0o004: Read, 0o200: Write, 0o600: Read | Write,
		0o642: Read | Write, 0o100: 1, 0o1777: 7,
	} {
		assert.Equal(t, want, RequestedAccess(flags), "%#o", flags)
	}
}

func TestIsOwner(t *testing.T) {
	assert.True(t, IsOwner(Creds{UID: 5}, 5, 6))
	assert.True(t, IsOwner(Creds{UID: 6}, 5, 6))
	assert.False(t, IsOwner(Creds{UID: 7, IPCOwner: true}, 5, 6), "CAP_IPC_OWNER is not enough")
	assert.True(t, IsOwner(Creds{UID: 7, SysAdmin: true}, 5, 6))
	assert.False(t, IsOwner(Creds{UID: 0}, 5, 6), "uid 0 without CAP_SYS_ADMIN")
}

func TestSelf(t *testing.T) {
	c := Self()
	assert.Equal(t, kernel.Getpid(), c.PID)
	assert.Equal(t, uint32(kernel.Geteuid()), c.UID)
	if c.UID == 0 {
		assert.True(t, c.IPCOwner)
		assert.True(t, c.SysAdmin)
		assert.False(t, c.SysResource, "this sandbox's root lacks CAP_SYS_RESOURCE (SEMANTICS D)")
	}
}

// Ftok matches glibc's formula; and, when a C compiler is at hand, glibc's
// ftok itself.
func TestFtok(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i := 0; i < 4; i++ {
		f := filepath.Join(dir, fmt.Sprint("f", i))
		require.NoError(t, os.WriteFile(f, nil, 0o644))
		files = append(files, f)
	}
	files = append(files, "/", "/etc/passwd")
	projs := []byte{0, 1, 'A', 0x7f, 0x80, 0xff}
	for _, f := range files {
		dev, ino, err := kernel.StatDevIno(f)
		require.NoError(t, err)
		for _, p := range projs {
			k, err := Ftok(f, p)
			require.NoError(t, err)
			want := int(int32(uint32(ino&0xffff) | uint32(dev&0xff)<<16 | uint32(p)<<24))
			assert.Equal(t, want, k, "%s %#x", f, p)
		}
	}
	_, err := Ftok(filepath.Join(dir, "missing"), 1)
	require.ErrorIs(t, err, kernel.ENOENT)

	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to compare with glibc's ftok")
	}
	src := filepath.Join(dir, "ftok.c")
	require.NoError(t, os.WriteFile(src, []byte(`#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
int main(int argc, char **argv) {
	for (int i = 1; i+1 < argc; i += 2) printf("%d\n", (int)ftok(argv[i], atoi(argv[i+1])));
	return 0;
}
`), 0o644))
	bin := filepath.Join(dir, "ftok")
	if out, err := exec.Command(cc, "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("cannot compile the glibc probe: %v\n%s", err, out)
	}
	var args []string
	var want []string
	for _, f := range files {
		for _, p := range projs {
			args = append(args, f, strconv.Itoa(int(p)))
			k, _ := Ftok(f, p)
			want = append(want, strconv.Itoa(k))
		}
	}
	out, err := exec.Command(bin, args...).Output()
	require.NoError(t, err)
	assert.Equal(t, want, strings.Fields(string(out)))
}
