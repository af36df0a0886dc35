package registry

// Differential tests: every get / stat / set / remove case of SEMANTICS
// A1–A2 (and the get/ctl parts of A3, A4, A7, A8) is run on the kernel's
// own SysV semaphores and queues and on the registry, by the same process
// (root in the test process, nobody in a helper), and the answers are
// compared. Each step also states the errno it expects, so that a case
// cannot pass by both sides doing the same wrong thing.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func init() {
	testutil.RegisterHelper("diff", func(args []string) int {
		c, err := Default()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println(runDiff(c, sc.Text()))
		}
		return 0
	})
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e kernel.Errno
	if !errors.As(err, &e) {
		return "error(" + err.Error() + ")"
	}
	if n := kernel.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}

func result(err error, val string) string {
	if err != nil {
		return errName(err)
	}
	return "ok:" + val
}

func permString(p Perm) string {
	return fmt.Sprintf("uid=%d,gid=%d,cuid=%d,cgid=%d,mode=%#o,key=%#x", p.UID, p.GID, p.CUID, p.CGID, p.Mode, uint32(p.Key))
}

// runDiff runs one command on the kernel and on the registry and returns
// "<kernel result> <registry result>".
func runDiff(c *Client, line string) string {
	f := strings.Fields(line)
	n := func(i int) int {
		v, err := strconv.ParseInt(f[i], 0, 64)
		if err != nil {
			panic(fmt.Sprintf("bad number %q in %q", f[i], line))
		}
		return int(v)
	}
	var kr, rr string
	switch f[0] {
	case "semget":
		kid, kerr := kernel.Semget(n(1), n(2), n(3))
		rid, rerr := c.Get(semReq(n(1), n(2), n(3)))
		kr, rr = result(kerr, strconv.Itoa(kid)), result(rerr, strconv.Itoa(rid))
	case "msgget":
		kid, kerr := kernel.Msgget(n(1), n(2))
		rid, rerr := c.Get(msgReq(n(1), n(2)))
		kr, rr = result(kerr, strconv.Itoa(kid)), result(rerr, strconv.Itoa(rid))
	case "semstat":
		ds, kerr := kernel.SemctlStat(n(1))
		o, rerr := c.Stat(shm.KindSem, n(2))
		kr = result(kerr, fmt.Sprintf("%s,nsems=%d", permString(ds.Perm), ds.Nsems))
		rr = result(rerr, fmt.Sprintf("%s,nsems=%d", permString(o.Perm), o.Count))
	case "msgstat":
		ds, kerr := kernel.MsgctlStat(n(1))
		o, rerr := c.Stat(shm.KindMsg, n(2))
		kr = result(kerr, fmt.Sprintf("%s,qbytes=%d", permString(ds.Perm), ds.Qbytes))
		rr = result(rerr, fmt.Sprintf("%s,qbytes=%d", permString(o.Perm), o.Param))
	case "semstatany": // SEM_STAT_ANY (by index) against StatAny
		kid, ds, kerr := kernel.SemctlStatAny(n(1) & kernel.IndexMask)
		o, rerr := c.StatAny(shm.KindSem, n(2))
		kr = result(kerr, fmt.Sprintf("%s,nsems=%d,id-ok=%v", permString(ds.Perm), ds.Nsems, kid == n(1)))
		rr = result(rerr, fmt.Sprintf("%s,nsems=%d,id-ok=%v", permString(o.Perm), o.Count, o.ID == n(2)))
	case "msgstatany":
		kid, ds, kerr := kernel.MsgctlStatAny(n(1) & kernel.IndexMask)
		o, rerr := c.StatAny(shm.KindMsg, n(2))
		kr = result(kerr, fmt.Sprintf("%s,qbytes=%d,id-ok=%v", permString(ds.Perm), ds.Qbytes, kid == n(1)))
		rr = result(rerr, fmt.Sprintf("%s,qbytes=%d,id-ok=%v", permString(o.Perm), o.Param, o.ID == n(2)))
	case "semset":
		var ds kernel.SemidDS
		ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode = uint32(n(3)), uint32(n(4)), uint32(n(5))
		kr = result(kernel.SemctlSet(n(1), ds), "")
		rr = result(c.Set(shm.KindSem, n(2), uint32(n(3)), uint32(n(4)), uint32(n(5)), 0), "")
	case "msgset":
		var ds kernel.MsqidDS
		ds.Perm.UID, ds.Perm.GID, ds.Perm.Mode, ds.Qbytes = uint32(n(3)), uint32(n(4)), uint32(n(5)), uint64(n(6))
		kr = result(kernel.MsgctlSet(n(1), ds), "")
		rr = result(c.Set(shm.KindMsg, n(2), uint32(n(3)), uint32(n(4)), uint32(n(5)), uint64(n(6))), "")
	case "semrm":
		kr = result(kernel.SemctlRemove(n(1)), "")
		rr = result(c.Remove(shm.KindSem, n(2)), "")
	case "msgrm":
		kr = result(kernel.MsgctlRemove(n(1)), "")
		rr = result(c.Remove(shm.KindMsg, n(2)), "")
	case "semmap": // a call that needs read permission: GETVAL; Map
		_, kerr := kernel.SemctlGetVal(n(1), 0)
		seg, rerr := c.Map(shm.KindSem, n(2))
		if rerr == nil {
			seg.Close()
		}
		kr, rr = result(kerr, ""), result(rerr, "")
	default:
		return "unknown command " + f[0]
	}
	return kr + " " + rr
}

// differ drives runDiff as root (in this process) or as nobody (a helper).
type differ struct {
	t     *testing.T
	c     *Client
	procs map[string]*testutil.Proc
}

// The identities steps run as, besides "root" (this process): "nobody",
// and "u1000" (uid 1000 with nobody's group as its egid: a creator whose
// group, not uid, is nobody's).
var identities = map[string]testutil.Opt{
	"nobody": testutil.AsNobody(),
	"u1000":  testutil.AsUser(1000, testutil.Nobody),
}

func newDiffer(t *testing.T) *differ {
	testutil.RequireRoot(t)
	return &differ{t: t, c: defaultClient(t), procs: map[string]*testutil.Proc{}}
}

// do runs cmd as who ("root" or "nobody"), checks that the kernel and the
// registry agree on the outcome and that it is want ("ok", "EACCES", ...),
// and returns the two values (ids, stat strings).
func (d *differ) do(who, want, format string, a ...any) (kval, rval string) {
	d.t.Helper()
	cmd := fmt.Sprintf(format, a...)
	var line string
	if who != "root" {
		p := d.procs[who]
		if p == nil {
			p = testutil.Start(d.t, "diff", nil, identities[who])
			d.procs[who] = p
		}
		p.Send("%s", cmd)
		line = p.Line(10 * time.Second)
	} else {
		line = runDiff(d.c, cmd)
	}
	kr, rr, ok := strings.Cut(line, " ")
	require.True(d.t, ok, "helper said %q", line)
	kst, kval, _ := strings.Cut(kr, ":")
	rst, rval, _ := strings.Cut(rr, ":")
	assert.Equal(d.t, kst, rst, "%s: %s: kernel and registry disagree (kernel %s, registry %s)", who, cmd, kr, rr)
	assert.Equal(d.t, want, kst, "%s: %s: kernel said %s", who, cmd, kr)
	assert.Equal(d.t, want, rst, "%s: %s: registry said %s", who, cmd, rr)
	return kval, rval
}

// same is do for commands whose values must match too (stat).
func (d *differ) same(who, want, format string, a ...any) string {
	d.t.Helper()
	k, r := d.do(who, want, format, a...)
	assert.Equal(d.t, k, r, "%s: %s: values differ", who, fmt.Sprintf(format, a...))
	return r
}

// obj is a pair of objects: the kernel's and the registry's.
type obj struct {
	kind     string // "sem" or "msg"
	kid, rid int
}

func (d *differ) ids(kind, kval, rval string) obj {
	d.t.Helper()
	kid, err := strconv.Atoi(kval)
	require.NoError(d.t, err)
	rid, err := strconv.Atoi(rval)
	require.NoError(d.t, err)
	testutil.Track(d.t, kind, kid)
	k := shm.KindSem
	if kind == "msg" {
		k = shm.KindMsg
	}
	cleanupObj(d.t, d.c, k, rid)
	return obj{kind, kid, rid}
}

// create makes a pair as who, expecting success.
func (d *differ) create(who, kind string, key, nsems, flags int) obj {
	d.t.Helper()
	var k, r string
	if kind == "sem" {
		k, r = d.do(who, "ok", "semget %d %d %#o", key, nsems, flags)
	} else {
		k, r = d.do(who, "ok", "msgget %d %#o", key, flags)
	}
	return d.ids(kind, k, r)
}

func (d *differ) stat(who, want string, o obj) string {
	d.t.Helper()
	return d.same(who, want, "%sstat %d %d", o.kind, o.kid, o.rid)
}

const (
	creat = kernel.IPC_CREAT
	excl  = kernel.IPC_EXCL
	nob   = testutil.Nobody
)

// A1.1: IPC_PRIVATE always creates, ignores IPC_CREAT/IPC_EXCL, is never
// found by key; A1.7 the new object's perm.
func TestDiffPrivate(t *testing.T) {
	d := newDiffer(t)
	for _, who := range []string{"root", "nobody"} {
		a := d.create(who, "sem", kernel.IPC_PRIVATE, 2, 0o600)
		b := d.create(who, "sem", kernel.IPC_PRIVATE, 2, creat|excl|0o600)
		assert.NotEqual(t, a.rid, b.rid)
		m1 := d.create(who, "msg", kernel.IPC_PRIVATE, 0, 0o640)
		m2 := d.create(who, "msg", kernel.IPC_PRIVATE, 0, creat|excl|0o1777)
		assert.NotEqual(t, m1.rid, m2.rid)
		uid := map[string]int{"root": 0, "nobody": nob}[who]
		assert.Equal(t, fmt.Sprintf("uid=%d,gid=%d,cuid=%d,cgid=%d,mode=0600,key=0x0,nsems=2", uid, uid, uid, uid), d.stat(who, "ok", a))
		assert.Contains(t, d.stat(who, "ok", m2), "mode=0777,key=0x0,qbytes=16384")
		// semget(IPC_PRIVATE, 0) cannot create (A7.2).
		d.do(who, "EINVAL", "semget 0 0 0600")
	}
}

// A1.2–A1.4, A1.6, A7.2–A7.3: lookup, EEXIST, ENOENT and nsems checks.
func TestDiffGetByKey(t *testing.T) {
	d := newDiffer(t)
	ks, km, kmiss := testutil.Key(t), testutil.Key(t), testutil.Key(t)
	s := d.create("root", "sem", ks, 3, creat|excl|0o640)
	m := d.create("root", "msg", km, 0, creat|excl|0o640)
	for _, who := range []string{"root", "nobody"} {
		// Missing key: ENOENT, even with IPC_EXCL alone.
		d.do(who, "ENOENT", "semget %d 1 0", kmiss)
		d.do(who, "ENOENT", "semget %d 1 %#o", kmiss, excl)
		d.do(who, "ENOENT", "msgget %d 0", kmiss)
		d.do(who, "ENOENT", "msgget %d %#o", kmiss, excl|0o600)
		// nsems out of range: EINVAL before the lookup.
		d.do(who, "EINVAL", "semget %d -1 0", kmiss)
		d.do(who, "EINVAL", "semget %d %d 0", kmiss, kernel.SEMMSL+1)
		d.do(who, "EINVAL", "semget %d %d %#o", ks, kernel.SEMMSL+1, creat)
		// Existing key with IPC_CREAT|IPC_EXCL: EEXIST, before the size check.
		d.do(who, "EEXIST", "semget %d 3 %#o", ks, creat|excl|0o600)
		d.do(who, "EEXIST", "semget %d 99 %#o", ks, creat|excl)
		d.do(who, "EEXIST", "msgget %d %#o", km, creat|excl|0o600)
		// nsems above the set's: EINVAL (before EACCES: see TestDiffCheckOrder).
		d.do(who, "EINVAL", "semget %d 4 0", ks)
		// Found: same id; 0 nsems means "any"; the mode is not changed.
		k, r := d.do(who, "ok", "semget %d 0 0", ks)
		assert.Equal(t, strconv.Itoa(s.kid)+" "+strconv.Itoa(s.rid), k+" "+r)
		k, r = d.do(who, "ok", "semget %d 3 %#o", ks, creat)
		assert.Equal(t, strconv.Itoa(s.kid)+" "+strconv.Itoa(s.rid), k+" "+r)
		k, r = d.do(who, "ok", "msgget %d %#o", km, creat)
		assert.Equal(t, strconv.Itoa(m.kid)+" "+strconv.Itoa(m.rid), k+" "+r)
	}
	assert.Contains(t, d.stat("root", "ok", s), "mode=0640")
	// Creating with nsems 0 is EINVAL.
	d.do("root", "EINVAL", "semget %d 0 %#o", kmiss, creat|excl|0o600)
	// A1.7: the mode keeps exactly flags&0777, execute bits included.
	x := d.create("nobody", "sem", testutil.Key(t), 1, creat|excl|0o111)
	assert.Equal(t, fmt.Sprintf("uid=%d,gid=%d,cuid=%d,cgid=%d,mode=0111", nob, nob, nob, nob), strings.Split(d.stat("root", "ok", x), ",key=")[0])
}

// A1.5: the requested mode is the low 9 bits merged into one rwx request;
// no bits requested always succeeds; root bypasses.
func TestDiffGetAccess(t *testing.T) {
	d := newDiffer(t)
	ks, km := testutil.Key(t), testutil.Key(t)
	d.create("root", "sem", ks, 2, creat|excl|0)
	d.create("root", "msg", km, 0, creat|excl|0)
	for _, fl := range []int{0o400, 0o200, 0o600, 0o040, 0o004, 0o002, 0o001, 0o777} {
		d.do("nobody", "EACCES", "semget %d 0 %#o", ks, fl)
		d.do("nobody", "EACCES", "msgget %d %#o", km, fl)
		d.do("root", "ok", "semget %d 0 %#o", ks, fl)
		d.do("root", "ok", "msgget %d %#o", km, fl)
	}
	for _, fl := range []int{0, creat} {
		d.do("nobody", "ok", "semget %d 0 %#o", ks, fl)
		d.do("nobody", "ok", "msgget %d %#o", km, fl)
	}
	// A 0644 object: nobody ("other") may ask for read, not write.
	k2 := testutil.Key(t)
	d.create("root", "msg", k2, 0, creat|excl|0o644)
	d.do("nobody", "ok", "msgget %d %#o", k2, 0o400)
	d.do("nobody", "ok", "msgget %d %#o", k2, 0o004)
	d.do("nobody", "EACCES", "msgget %d %#o", k2, 0o600)
	d.do("nobody", "EACCES", "msgget %d %#o", k2, 0o002)
	// Nobody's own mode-0 object: the owner gets no bypass.
	k3 := testutil.Key(t)
	d.create("nobody", "sem", k3, 1, creat|excl|0)
	d.do("nobody", "EACCES", "semget %d 1 %#o", k3, 0o400)
	d.do("nobody", "ok", "semget %d 1 0", k3)
}

// A1.6: EEXIST, then the size check, then EACCES.
func TestDiffCheckOrder(t *testing.T) {
	d := newDiffer(t)
	ks := testutil.Key(t)
	d.create("root", "sem", ks, 3, creat|excl|0o600)
	d.do("nobody", "EINVAL", "semget %d 4 %#o", ks, 0o600)
	d.do("nobody", "EACCES", "semget %d 2 %#o", ks, 0o600)
	d.do("nobody", "EEXIST", "semget %d 4 %#o", ks, creat|excl|0o600)
}

// A2.1: the class is chosen exclusively; A2.2 root bypasses; A4.1/A8.2
// IPC_STAT needs read.
func TestDiffExclusiveClass(t *testing.T) {
	d := newDiffer(t)
	// Owned by nobody, mode 0066: the owner is denied although group and
	// other would be allowed.
	s := d.create("nobody", "sem", testutil.Key(t), 1, creat|excl|0o066)
	m := d.create("nobody", "msg", testutil.Key(t), 0, creat|excl|0o066)
	d.stat("nobody", "EACCES", s)
	d.stat("nobody", "EACCES", m)
	d.stat("root", "ok", s)
	d.stat("root", "ok", m)
	// Root's 0600: nobody is "other".
	r := d.create("root", "msg", testutil.Key(t), 0, creat|excl|0o600)
	d.stat("nobody", "EACCES", r)
	// SEM_STAT_ANY and MSG_STAT_ANY (StatAny) show it to anyone.
	d.same("nobody", "ok", "%sstatany %d %d", r.kind, r.kid, r.rid)
	d.same("nobody", "ok", "%sstatany %d %d", s.kind, s.kid, s.rid)
	// Group class: nobody is in the object's group (gid 65534): only the
	// group bits count, so 0006 denies and 0060 allows.
	g := d.create("root", "sem", testutil.Key(t), 1, creat|excl|0o600)
	d.do("root", "ok", "semset %d %d 0 %d %#o", g.kid, g.rid, nob, 0o006)
	d.stat("nobody", "EACCES", g)
	d.do("root", "ok", "semset %d %d 0 %d %#o", g.kid, g.rid, nob, 0o060)
	d.stat("nobody", "ok", g)
	// The creator's group counts as much as the group: uid 1000 with egid
	// nobody creates (cgid = nobody), root moves uid and gid away; nobody
	// is then in the group class through cgid alone.
	gm := d.create("u1000", "msg", testutil.Key(t), 0, creat|excl|0o600)
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", gm.kid, gm.rid, 0o040, kernel.MSGMNB)
	assert.Contains(t, d.stat("nobody", "ok", gm), fmt.Sprintf("uid=0,gid=0,cuid=1000,cgid=%d,mode=040", nob))
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", gm.kid, gm.rid, 0o004, kernel.MSGMNB)
	d.stat("nobody", "EACCES", gm)
	// The creator (cuid) is in the owner class even after giving the
	// object away: 0400 lets it read, 0004 does not.
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", gm.kid, gm.rid, 0o400, kernel.MSGMNB)
	d.stat("u1000", "ok", gm)
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", gm.kid, gm.rid, 0o004, kernel.MSGMNB)
	d.stat("u1000", "EACCES", gm)
	// ... and may still set and remove it (A2.6).
	d.do("u1000", "ok", "msgset %d %d 0 0 %#o %d", gm.kid, gm.rid, 0o600, kernel.MSGMNB)
}

// A2.4–A2.6, A4.2–A4.3, A8.9: IPC_SET and IPC_RMID.
func TestDiffSetRemove(t *testing.T) {
	d := newDiffer(t)
	s := d.create("root", "sem", testutil.Key(t), 2, creat|excl|0o666)
	m := d.create("root", "msg", testutil.Key(t), 0, creat|excl|0o666)
	// Mode bits do not matter: nobody may not set or remove root's objects.
	d.do("nobody", "EPERM", "semset %d %d %d %d %#o", s.kid, s.rid, nob, nob, 0o666)
	d.do("nobody", "EPERM", "msgset %d %d %d %d %#o %d", m.kid, m.rid, nob, nob, 0o666, 100)
	d.do("nobody", "EPERM", "semrm %d %d", s.kid, s.rid)
	d.do("nobody", "EPERM", "msgrm %d %d", m.kid, m.rid)
	// Only the low 9 bits are copied.
	d.do("root", "ok", "semset %d %d 0 0 %#o", s.kid, s.rid, 0o7777)
	assert.Contains(t, d.stat("root", "ok", s), "mode=0777")
	// uid or gid -1 is EINVAL.
	d.do("root", "EINVAL", "semset %d %d %d 0 %#o", s.kid, s.rid, uint32(0xffffffff), 0o600)
	d.do("root", "EINVAL", "msgset %d %d 0 %d %#o %d", m.kid, m.rid, uint32(0xffffffff), 0o600, kernel.MSGMNB)
	// qbytes: lowering and raising up to MSGMNB are fine, 0 too; above
	// MSGMNB needs CAP_SYS_RESOURCE, which root lacks here.
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, kernel.MSGMNB-1)
	assert.Contains(t, d.stat("root", "ok", m), fmt.Sprintf("qbytes=%d", kernel.MSGMNB-1))
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, 0)
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, kernel.MSGMNB)
	d.do("root", "EPERM", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, kernel.MSGMNB+1)
	// The kernel keeps qbytes in 32 bits: 2^40 sets 0, 2^32+5 sets 5.
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, uint64(1)<<40)
	assert.Contains(t, d.stat("root", "ok", m), "qbytes=0")
	d.do("root", "ok", "msgset %d %d 0 0 %#o %d", m.kid, m.rid, 0o666, uint64(1)<<32+5)
	assert.Contains(t, d.stat("root", "ok", m), "qbytes=5")
	// Give both to nobody: the new owner may set and remove, the creator
	// (root here, but the check is the creator's, not root's) still may.
	d.do("root", "ok", "semset %d %d %d %d %#o", s.kid, s.rid, nob, nob, 0o600)
	d.do("root", "ok", "msgset %d %d %d %d %#o %d", m.kid, m.rid, nob, nob, 0o600, kernel.MSGMNB)
	assert.Contains(t, d.stat("nobody", "ok", s), fmt.Sprintf("uid=%d,gid=%d,cuid=0,cgid=0,mode=0600", nob, nob))
	d.do("nobody", "ok", "semset %d %d %d %d %#o", s.kid, s.rid, nob, nob, 0o640)
	d.do("nobody", "ok", "msgset %d %d %d %d %#o %d", m.kid, m.rid, nob, nob, 0o640, 1000)
	d.do("nobody", "ok", "semrm %d %d", s.kid, s.rid)
	d.do("root", "ok", "msgrm %d %d", m.kid, m.rid)
	// A1.10: a removed id is EINVAL for everything, for everyone.
	for _, who := range []string{"root", "nobody"} {
		d.stat(who, "EINVAL", s)
		d.stat(who, "EINVAL", m)
		d.do(who, "EINVAL", "semset %d %d 0 0 0", s.kid, s.rid)
		d.do(who, "EINVAL", "msgset %d %d 0 0 0 0", m.kid, m.rid)
		d.do(who, "EINVAL", "semrm %d %d", s.kid, s.rid)
		d.do(who, "EINVAL", "msgrm %d %d", m.kid, m.rid)
		// Negative ids.
		d.same(who, "EINVAL", "semstat -1 -1")
		d.same(who, "EINVAL", "msgstat -1 -1")
		d.do(who, "EINVAL", "semrm -1 -1")
		d.do(who, "EINVAL", "msgset -1 -1 0 0 0 0")
	}
	// A nobody-created object: nobody is creator and owner.
	n := d.create("nobody", "msg", testutil.Key(t), 0, creat|excl|0)
	d.do("nobody", "ok", "msgset %d %d %d %d 0 100", n.kid, n.rid, nob, nob)
	d.do("nobody", "ok", "msgrm %d %d", n.kid, n.rid)
	// The key is free again after IPC_RMID.
}

// A1.10: ids of the other kind, and ids of non-usysv segments, are EINVAL.
func TestWrongKindAndForeignIDs(t *testing.T) {
	c := defaultClient(t)
	sid := mustGet(t, c, semReq(testutil.Key(t), 1, creat|excl|0o600))
	mid := mustGet(t, c, msgReq(testutil.Key(t), creat|excl|0o600))
	_, err := c.Stat(shm.KindMsg, sid)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = c.Stat(shm.KindSem, mid)
	require.ErrorIs(t, err, kernel.EINVAL)
	require.ErrorIs(t, c.Remove(shm.KindMsg, sid), kernel.EINVAL)
	require.ErrorIs(t, c.Set(shm.KindSem, mid, 0, 0, 0o600, 0), kernel.EINVAL)
	_, err = c.Stat(shm.Kind(99), sid)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = c.Get(GetRequest{Kind: shm.Kind(99), Key: int32(testutil.Key(t)), Flags: creat})
	require.ErrorIs(t, err, kernel.EINVAL)
	// A plain kernel segment is not a usysv object.
	kid, err := kernel.Shmget(kernel.IPC_PRIVATE, 4096, 0o600)
	require.NoError(t, err)
	testutil.Track(t, "shm", kid)
	_, err = c.Stat(shm.KindSem, kid)
	require.ErrorIs(t, err, kernel.EINVAL)
	_, err = c.Stat(shm.KindSem, int(^uint(0)>>1))
	require.ErrorIs(t, err, kernel.EINVAL)
	// Both still there and untouched.
	_, err = c.Stat(shm.KindSem, sid)
	require.NoError(t, err)
	_, err = c.Stat(shm.KindMsg, mid)
	require.NoError(t, err)
}

// Client.Map: a process the segment's permissions keep out gets EACCES on
// a live object but EINVAL on a removed one, as the kernel does, although
// the removed object's segment lives on while another process maps it
// (fuzz FINDINGS F7).
func TestMapRemovedNoAccess(t *testing.T) {
	d := newDiffer(t)
	o := d.create("root", "sem", kernel.IPC_PRIVATE, 1, 0o600)
	seg, err := shm.Map(o.rid, shm.KindSem, d.c.Namespace())
	require.NoError(t, err)
	defer seg.Close()
	d.do("nobody", "EACCES", "semmap %d %d", o.kid, o.rid)
	d.do("root", "ok", "semrm %d %d", o.kid, o.rid)
	require.True(t, seg.Removed())
	d.do("nobody", "EINVAL", "semmap %d %d", o.kid, o.rid)
}
