package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// The creation journal.
//
// shm.CreateWith makes an object's segment with shmget(IPC_PRIVATE), then
// attaches it and writes its header. A host killed (SIGKILL) before the
// header is written leaves a segment that no header marks as usysv's; and
// a host killed after the header but before the object is in its table and
// answered leaves an object that nobody asked for (IPC_PRIVATE: nobody has
// its id), or one whose queue size (qbytes) was not set yet.
//
// The kernel's record and the header say most of it without a journal.
// Every segment shm.CreateWith makes has a size that ends shm.SizeMark
// bytes into a 4 KiB block, and its header, once written, says
// StateCreating until the host publishes the object, after the journal
// says "done" and before the answer goes out. So a rebuild, by any
// registry, removes a segment without a header that the kernel's list
// shows a creation began and nobody finished (unfinished, below), and the
// namespace's rebuild removes an object of its own never published whose
// creator is gone (rebuild). Both hold when the journal is lost, with a
// socket directory removed while its host was in a creation.
//
// And every host keeps a journal: one small file next to the socket,
// <socket>.journal.<random>, that says which creation it is in the middle
// of. Before shmget it writes "creating Z bytes at time T" (intent); as
// soon as shmget has returned, the id (made); once the object is in the
// table, with its kernel permissions and parameter set, "done", before the
// answer goes out. A host holds its journal locked (flock) from its start
// to its clean stop, and loses the lock when it dies or execs. A registry
// that takes over reads the journals whose lock it can take
// (recoverJournals, before rebuild) and undoes an unfinished creation
// whose id the journal has, header or not: the creation had not happened,
// as far as anyone could know. Nothing is removed unless the kernel's own
// record of the segment agrees with the journal: created by the journal's
// host pid, by the journal owner's uid, IPC_PRIVATE, of the journal's size,
// not before its time nor after the journal file was last written (with
// "made", written after shmget returned). A journal written in another
// boot or another IPC namespace (a socket directory on a disk, or a
// container restarted with the same volume: ids and pids start over there)
// is not acted on.
//
// With the journal, a creation is undone at once, even when its host's pid
// lives on (it exec'd: the journal's lock went with the old image). Without
// it, or with one that says only "intent" (a host killed in shmget), it is
// undone once no process has the host's pid: an object never published by
// its namespace's rebuild, and a segment without a header by every rebuild,
// if the kernel's list shows that shm.CreateWith began it and nobody
// finished it (unfinished: IPC_PRIVATE, of a size with shm.SizeMark, still
// shm.CreateMode, made and owned by the registry's own uid) and it holds
// nothing but zeros (allZero: nobody wrote to it). Nobody was told its id.
// Whether it was ever attached cannot be the test: another registry's
// rebuild, or any tool walking the kernel's list, peeks at every candidate,
// read-only. A segment that would pass and not be usysv's would have to be
// made by another program of the same user, of one of the 1 in 4096 sizes
// that carry the mark, mode 0600, never written, and be left by its creator
// that died: we accept that.
//
// The journal is trusted as the socket directory is: a file is read only
// if it is a regular file owned by the registry's own uid and not
// writable by others; another user who can write the directory could
// replace the socket itself anyway. Journals of other users are left alone
// (their segments are not ours to remove).

const (
	journalMagic = 0x6a767375 // "usvj"
	journalSize  = 72

	jrOffMagic    = 0
	jrOffState    = 4
	jrOffPid      = 8
	jrOffStart    = 16
	jrOffSegSize  = 24
	jrOffTime     = 32
	jrOffID       = 40
	jrOffBoot     = 48
	jrOffIPCNS    = 56
	jrOffChecksum = 64

	jrDone   = 1 // no creation in progress
	jrIntent = 2 // about to shmget: segsize and time are set
	jrMade   = 3 // shmget returned: id is set too
)

// journalRec is one journal record.
type journalRec struct {
	state   uint32
	pid     int
	start   uint64
	segSize uint64
	time    int64 // Unix nanoseconds, read before shmget
	id      int
	boot    uint64 // the host's bootID
	ipcns   uint64 // and ipcNamespace
}

// madeSlack is undoMade's: the id identifies the segment, with its
// creator's pid, and the time bound only keeps a later segment given the
// same id (a full turn of the kernel's sequence numbers) from being taken
// for it.
const madeSlack = 1 // second

// bootID and ipcNamespace identify the boot and the IPC namespace that
// segment ids and pids in a journal refer to (0 if /proc does not say).
func bootID() uint64 {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return 0
	}
	return xxhash.Sum64(b)
}

func ipcNamespace() uint64 {
	l, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		return 0
	}
	return xxhash.Sum64String(l)
}

func (r journalRec) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:journalSize])
	le.PutUint32(b[jrOffMagic:], journalMagic)
	le.PutUint32(b[jrOffState:], r.state)
	le.PutUint32(b[jrOffPid:], uint32(r.pid))
	le.PutUint64(b[jrOffStart:], r.start)
	le.PutUint64(b[jrOffSegSize:], r.segSize)
	le.PutUint64(b[jrOffTime:], uint64(r.time))
	le.PutUint32(b[jrOffID:], uint32(int32(r.id)))
	le.PutUint64(b[jrOffBoot:], r.boot)
	le.PutUint64(b[jrOffIPCNS:], r.ipcns)
	le.PutUint64(b[jrOffChecksum:], xxhash.Sum64(b[:jrOffChecksum]))
}

func decodeJournal(b []byte) (journalRec, error) {
	le := binary.LittleEndian
	if len(b) < journalSize || le.Uint32(b[jrOffMagic:]) != journalMagic ||
		le.Uint64(b[jrOffChecksum:]) != xxhash.Sum64(b[:jrOffChecksum]) {
		return journalRec{}, errors.New("not a valid journal record")
	}
	r := journalRec{
		state:   le.Uint32(b[jrOffState:]),
		pid:     int(le.Uint32(b[jrOffPid:])),
		start:   le.Uint64(b[jrOffStart:]),
		segSize: le.Uint64(b[jrOffSegSize:]),
		time:    int64(le.Uint64(b[jrOffTime:])),
		id:      int(int32(le.Uint32(b[jrOffID:]))),
		boot:    le.Uint64(b[jrOffBoot:]),
		ipcns:   le.Uint64(b[jrOffIPCNS:]),
	}
	if r.state < jrDone || r.state > jrMade {
		return journalRec{}, fmt.Errorf("journal state %d", r.state)
	}
	return r, nil
}

// journal is a host's own journal file. Its methods are called with the
// server's table lock held for writing (creations are serialised).
type journal struct {
	f    *os.File
	rec  journalRec
	buf  [journalSize]byte
	path string
}

// journalPrefix is the name journals of socket start with.
func journalPrefix(socket string) string { return filepath.Base(socket) + ".journal." }

// newJournal creates this host's journal file (a fresh name, O_EXCL, mode
// 0600), locks it (flock, held until the host closes it, dies or execs:
// the descriptor is close-on-exec) and writes "done" into it.
func newJournal(socket string) (*journal, error) {
	f, err := os.CreateTemp(filepath.Dir(socket), journalPrefix(socket)+"*")
	if err != nil {
		return nil, fmt.Errorf("registry: creation journal: %w", err)
	}
	if err := kernel.Flock(int(f.Fd()), kernel.LOCK_EX|kernel.LOCK_NB); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("registry: lock the creation journal: %w", err)
	}
	pid, start := kernel.Self()
	j := &journal{f: f, path: f.Name(), rec: journalRec{state: jrDone, pid: pid, start: start,
		boot: bootID(), ipcns: ipcNamespace()}}
	if err := j.write(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

func (j *journal) write() error {
	j.rec.encode(j.buf[:])
	if _, err := j.f.WriteAt(j.buf[:], 0); err != nil {
		return fmt.Errorf("registry: write the creation journal: %w", err)
	}
	return nil
}

// intent records that a segment of size bytes is about to be created.
func (j *journal) intent(size uint64, now int64) error {
	j.rec.state, j.rec.segSize, j.rec.time, j.rec.id = jrIntent, size, now, -1
	return j.write()
}

// made records the new segment's id (shm.CreateWith's made).
func (j *journal) made(id int) error {
	j.rec.state, j.rec.id = jrMade, id
	return j.write()
}

// done records that no creation is in progress.
func (j *journal) done() error {
	j.rec.state = jrDone
	return j.write()
}

// close closes and removes the journal file; a clean stop leaves none.
func (j *journal) close() {
	_ = j.f.Close()
	_ = os.Remove(j.path)
}

// recoverJournals finishes what dead hosts of this socket left: for each
// journal of theirs it can trust (see above), it removes the segment of an
// unfinished creation, then the journal file. own is this host's journal
// file, skipped. It runs before rebuild, while no registry serves.
func (s *Server) recoverJournals(own string) {
	dir := filepath.Dir(s.socket)
	ents, err := os.ReadDir(dir)
	if err != nil {
		log.Printf("registry: journals: %v", err)
		return
	}
	prefix := journalPrefix(s.socket)
	boot, ipcns := bootID(), ipcNamespace()
	for _, de := range ents {
		path := filepath.Join(dir, de.Name())
		if !strings.HasPrefix(de.Name(), prefix) || path == own {
			continue
		}
		f, rec, mtime, err := openJournal(path, s.euid)
		switch {
		case errors.Is(err, errNotOurs):
			continue // another user's: not ours to judge or remove
		case errors.Is(err, errJournalHeld):
			// Its host still holds it: it lives, as the same image (a
			// registry that closed cleanly removes its journal; this one
			// did not). Leave it.
			continue
		case err != nil:
			// Empty (a host killed before its first write), torn or
			// garbage: nothing to act on.
			log.Printf("registry: journal %s: %v; removed", path, err)
			_ = os.Remove(path)
			_ = f.Close()
			continue
		}
		switch {
		case rec.boot != boot:
			// An earlier boot: its segments went with it.
			_ = os.Remove(path)
		case rec.ipcns != ipcns:
			// Another IPC namespace (a registry of another container on
			// the same socket directory, say): its ids are not ours.
		default:
			// Its host is gone. A creation that got as far as its id
			// is undone here; one that did not has no header yet, and
			// rebuild removes its segment, if it made one, once its
			// creator is gone (unfinished).
			if rec.state == jrMade {
				s.undoMade(rec, mtime)
			}
			_ = os.Remove(path)
		}
		_ = f.Close() // (its lock with it)
	}
}

var (
	// errNotOurs: a journal file this registry must not trust.
	errNotOurs = errors.New("not our journal")
	// errJournalHeld: a journal whose host holds its lock (newJournal).
	errJournalHeld = errors.New("journal held by its host")
)

// openJournal opens journal path, if it is a regular file owned by uid and
// not writable by group or others, and takes its lock; then it reads the
// record, and the time it was last written (Unix seconds), through the
// locked descriptor, which the caller closes (f is nil when err is
// errNotOurs or errJournalHeld).
//
// The host holds the lock for as long as it is the image that wrote the
// journal (newJournal), so errJournalHeld means it lives. Whether the host
// lives is the lock's say, not its pid's: a host that execs keeps its pid
// and start time, but its journal descriptor and lock are gone, and so is
// the creation it was in the middle of; left to the pid, that journal would
// wait for the new image to exit, and the object it names, adopted and
// handed out meanwhile by rebuild, would be removed then. Taking the lock
// before reading, the record read is the last its host wrote.
func openJournal(path string, uid uint32) (*os.File, journalRec, int64, error) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, journalRec{}, 0, errNotOurs
	}
	owner, mode, err := kernel.StatOwner(path)
	if err != nil || owner != uid || mode&0o022 != 0 {
		return nil, journalRec{}, 0, errNotOurs
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, journalRec{}, 0, errNotOurs
	}
	fo, err := f.Stat()
	if err != nil || !os.SameFile(fi, fo) {
		_ = f.Close()
		return nil, journalRec{}, 0, errNotOurs // replaced meanwhile
	}
	if err := kernel.Flock(int(f.Fd()), kernel.LOCK_EX|kernel.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, journalRec{}, 0, errJournalHeld
	}
	if fo, err = f.Stat(); err != nil { // the time of its last write, under the lock
		_ = f.Close()
		return nil, journalRec{}, 0, errNotOurs
	}
	var b [journalSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return f, journalRec{}, 0, fmt.Errorf("short journal: %w", err)
	}
	rec, err := decodeJournal(b[:])
	return f, rec, fo.ModTime().Unix(), err
}

// journalMatch reports whether the kernel's record of a segment agrees
// with what rec says about the segment its host was creating, made no
// later than latest (Unix seconds). The kernel stamps shm_ctime from its
// coarse clock, which may be a tick behind the time.Now read before
// shmget: hence the second of slack below.
func journalMatch(rec journalRec, uid uint32, latest int64, ds kernel.ShmidDS) bool {
	return ds.Perm.Key == kernel.IPC_PRIVATE && ds.Cpid == rec.pid &&
		ds.Perm.CUID == uid && ds.Segsz == rec.segSize &&
		ds.Ctime >= rec.time/1e9-1 && ds.Ctime <= latest && ds.Perm.Mode&kernel.SHM_DEST == 0
}

// undoMade removes the segment of a creation that got as far as its id;
// the journal was last written at mtime, after shmget, and again after the
// IPC_SET that gives the segment its permissions, which sets its ctime. A
// host killed between that IPC_SET and the write can leave a ctime in the
// second after mtime: madeSlack.
func (s *Server) undoMade(rec journalRec, mtime int64) {
	// Without a permission check (SHM_STAT_ANY): a host that is not root
	// may not read a segment whose mode gives its owner class nothing,
	// and an EACCES taken for "gone" left the object to the rebuild.
	got, ds, err := kernel.ShmctlStatIndex(rec.id & kernel.IndexMask)
	if err != nil || got != rec.id {
		// Not at that index: gone, or indexes wider than IndexMask
		// (ipcmni_extend), or no SHM_STAT_ANY (before Linux 4.17).
		if ds, err = kernel.ShmctlStat(rec.id); err != nil {
			return // gone already (or, there, not ours to read)
		}
	}
	if !journalMatch(rec, s.euid, mtime+madeSlack, ds) {
		log.Printf("registry: segment %d, named by a creation journal, is not what the journal says; left alone", rec.id)
		return
	}
	// No one was told its id, but one may have attached it by id (it shows
	// in ipcs): if it has a header, say it is removed.
	_ = s.withAccess(kernel.ShmSegment{ID: rec.id, DS: ds}, func() error {
		p, st, err := shm.Peek(rec.id)
		if err != nil || p.Namespace != s.ns || st != shm.StateLive {
			return err
		}
		seg, err := shm.Map(rec.id, p.Kind, s.ns)
		if err != nil {
			return err
		}
		if seg.MarkRemoved() {
			seg.WakeAll()
		}
		return seg.Close()
	})
	if err := kernel.ShmctlRemove(rec.id); err != nil {
		log.Printf("registry: remove segment %d of an unfinished creation: %v", rec.id, err)
	}
}

// unfinished reports whether the kernel's record of a segment says that
// shm.CreateWith began it for a registry of uid and did not finish it: a
// candidate (IPC_PRIVATE, with shm.SizeMark), made and owned by uid, with
// the mode shm.CreateWith gave it, not removed. Whether its creator is gone
// and it holds only zeros is for the caller to see (rebuild).
func unfinished(ds kernel.ShmidDS, uid uint32) bool {
	return shm.Candidate(ds) && ds.Perm.CUID == uid && ds.Perm.UID == uid &&
		ds.Perm.Mode&0o777 == shm.CreateMode && ds.Perm.Mode&kernel.SHM_DEST == 0 && ds.Cpid > 0
}

// allZero reports whether segment id holds only zeros: nothing was ever
// written to it. (Whether it was ever attached cannot be the test: any
// process walking the kernel's list, another registry's rebuild say,
// peeks at every IPC_PRIVATE segment of a header's size, read-only.) It
// reads only the pages that exist (ShmMemory, Resident): a page never
// touched reads as zeros, and reading it would allocate it, the whole
// segment (up to Limits.MaxSegment) charged to the registry for a moment.
// A segment with pages swapped out, which Resident cannot tell from holes,
// or one that cannot be attached, counts as written: it is kept (logged).
func allZero(id int) bool {
	rss, swap, err := kernel.ShmMemory(id)
	switch {
	case err != nil:
		return false // gone meanwhile, or no /proc: keep it
	case swap != 0:
		log.Printf("registry: segment %d of an unfinished creation has pages swapped out; kept", id)
		return false
	case rss == 0:
		return true // not a page of it exists
	}
	mem, err := kernel.Shmat(id, kernel.SHM_RDONLY)
	if err != nil {
		log.Printf("registry: segment %d of an unfinished creation: attach to look at it: %v; kept", id, err)
		return false
	}
	defer func() { _ = kernel.Shmdt(mem) }()
	res, err := kernel.Resident(mem)
	if err != nil {
		return false
	}
	pg := os.Getpagesize()
	for p, in := range res {
		if !in {
			continue
		}
		for _, b := range mem[p*pg : min((p+1)*pg, len(mem))] {
			if b != 0 {
				return false
			}
		}
	}
	// A page swapped out while we looked was skipped as a hole.
	_, swap, err = kernel.ShmMemory(id)
	return err == nil && swap == 0
}
