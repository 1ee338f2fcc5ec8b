package testenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// debootstrapSuite is the Debian release of the glibc base images: the host's (bookworm),
	// whose mirror its apt already reaches.
	debootstrapSuite = "bookworm"
	// debootstrapTreeName names the tree in the cache; change it when the debootstrap command
	// changes, so that no run reuses a tree made another way.
	debootstrapTreeName  = debootstrapSuite + "-minbase-gcc.v1"
	debianFallbackMirror = "http://deb.debian.org/debian"
)

// debootstrapTree returns a Debian tree made by debootstrap (minbase, with gcc and libc6-dev)
// in $MODELSHIP_CACHE/debootstrap, making it the first time. It is made under a .tmp name and
// renamed when complete, so a run that dies halfway leaves nothing another run would trust.
func debootstrapTree(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("MODELSHIP_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("no MODELSHIP_CACHE and no home folder for the cache: %v", err)
		}
		cache = filepath.Join(home, ".cache", "modelship")
	}
	parent := filepath.Join(cache, "debootstrap")
	dir := filepath.Join(parent, debootstrapTreeName)
	if complete(dir) {
		return dir
	}
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		debootstrap = "/usr/sbin/debootstrap" // root's PATH has /usr/sbin, others' may not
		if _, err := os.Stat(debootstrap); err != nil {
			Missing(t, "debootstrap", "the glibc base images are made with debootstrap (apt-get install debootstrap)")
		}
	}
	if os.Geteuid() != 0 {
		Missing(t, "debootstrap", "debootstrap makes the glibc base images and must run as root")
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("make %s: %v", parent, err)
	}
	// One maker at a time: test packages run in parallel processes.
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lock %s: %v", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", dir, err)
	}
	if complete(dir) {
		return dir
	}
	tmp := dir + ".tmp"
	if err := removeTree(tmp); err != nil {
		t.Fatalf("remove the half-made tree of an earlier run: %v", err)
	}
	mirror := debianMirror()
	start := time.Now()
	t.Logf("debootstrap %s from %s into %s (once per machine)", debootstrapSuite, mirror, dir)
	cmd := exec.Command(debootstrap, "--variant=minbase", "--include=gcc,libc6-dev", debootstrapSuite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = removeTree(tmp)
		t.Fatalf("debootstrap %s from %s: %v (set MODELSHIP_DEBIAN_MIRROR for another mirror)\n%s", debootstrapSuite, mirror, err, tail(string(out), 40))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("move the debootstrap tree into place: %v", err)
	}
	t.Logf("debootstrap done in %s", time.Since(start).Round(time.Second))
	return dir
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "usr", "bin", "gcc"))
	return err == nil
}

// removeTree removes a half-made debootstrap tree, after unmounting what debootstrap may have
// left mounted in it (proc, sys), so that nothing outside the tree is touched.
func removeTree(dir string) error {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	var inside []string
	for line := range strings.SplitSeq(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			inside = append(inside, f[1])
		}
	}
	slices.SortFunc(inside, func(a, b string) int { return len(b) - len(a) }) // deepest first
	for _, m := range inside {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return os.RemoveAll(dir)
}

// debianMirror is MODELSHIP_DEBIAN_MIRROR, else the mirror this machine's apt uses for
// debootstrapSuite (/etc/apt/sources.list and sources.list.d, one-line or deb822 format).
func debianMirror() string {
	if m := os.Getenv("MODELSHIP_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, name := range append([]string{"/etc/apt/sources.list"}, files...) {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		var mirror string
		switch {
		case strings.HasSuffix(name, ".sources"):
			mirror = mirrorDeb822(data)
		case strings.HasSuffix(name, ".list"):
			mirror = mirrorOneLine(data)
		}
		if mirror != "" {
			return mirror
		}
	}
	return debianFallbackMirror
}

// mirrorOneLine reads "deb [options] URI SUITE COMPONENTS..." lines.
func mirrorOneLine(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == debootstrapSuite {
			return f[0]
		}
	}
	return ""
}

// mirrorDeb822 reads the stanzas of a .sources file (Types, URIs, Suites).
func mirrorDeb822(data []byte) string {
	for stanza := range strings.SplitSeq(string(data), "\n\n") {
		fields := map[string][]string{}
		for line := range strings.SplitSeq(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(k)] = strings.Fields(v)
			}
		}
		if slices.Contains(fields["types"], "deb") && slices.Contains(fields["suites"], debootstrapSuite) && len(fields["uris"]) > 0 {
			return fields["uris"][0]
		}
	}
	return ""
}

// addDebootstrapTree writes the whole tree into the archive (owners, modes and hard links as
// they are; no device nodes, no downloaded packages), through GNU tar.
func addDebootstrapTree(tw *tar.Writer, tree string) error {
	cmd := exec.Command("tar", "-C", tree, "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
		"--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*", "-cf", "-", ".")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	copyErr := copyTar(tw, tar.NewReader(stdout))
	if copyErr != nil {
		_ = cmd.Process.Kill()
	}
	if err := cmd.Wait(); err != nil && copyErr == nil {
		return fmt.Errorf("tar %s: %w: %s", tree, err, stderr.String())
	}
	return copyErr
}

func copyTar(tw *tar.Writer, tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		hdr.Name = strings.TrimPrefix(hdr.Name, "./")
		if hdr.Name == "" {
			continue
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = strings.TrimPrefix(hdr.Linkname, "./")
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// glibcRuntimePackages are the Debian packages whose shared libraries distroless cc holds.
var glibcRuntimePackages = []string{"libc6", "libgcc-s1", "libstdc++6", "libgomp1"}

// addGlibcLibraries writes the shared libraries of glibcRuntimePackages, taken from the tree
// (its symbolic links followed, inside the tree only), into lib/x86_64-linux-gnu/ as distroless
// lays them out, with the dynamic loader's /lib64 link.
func addGlibcLibraries(tw *tar.Writer, tree string) error {
	root, err := os.OpenRoot(tree)
	if err != nil {
		return err
	}
	defer root.Close()
	libs := map[string]string{} // base name -> path in the tree
	for _, pkg := range glibcRuntimePackages {
		list, err := root.ReadFile("var/lib/dpkg/info/" + pkg + ":amd64.list")
		if errors.Is(err, fs.ErrNotExist) {
			list, err = root.ReadFile("var/lib/dpkg/info/" + pkg + ".list")
		}
		if err != nil {
			return fmt.Errorf("the files of %s in %s: %w", pkg, tree, err)
		}
		for _, p := range strings.Fields(string(list)) {
			dir, base := path.Split(p)
			if (dir == "/lib/x86_64-linux-gnu/" || dir == "/usr/lib/x86_64-linux-gnu/") && strings.Contains(base, ".so") {
				libs[base] = strings.TrimPrefix(p, "/")
			}
		}
	}
	if err := addFiles(tw, nil, "lib", "lib/x86_64-linux-gnu", "lib64"); err != nil {
		return err
	}
	names := make([]string, 0, len(libs))
	for name := range libs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		dst := "lib/x86_64-linux-gnu/" + name
		// A link to a library of the set stays a link (libstdc++.so.6 -> libstdc++.so.6.0.30).
		if target, err := root.Readlink(libs[name]); err == nil && !strings.Contains(target, "/") && libs[target] != "" {
			if err := tw.WriteHeader(&tar.Header{Name: dst, Linkname: target, Typeflag: tar.TypeSymlink, Mode: 0o777}); err != nil {
				return err
			}
			continue
		}
		data, err := root.ReadFile(libs[name])
		if err != nil {
			return fmt.Errorf("library %s in %s: %w", libs[name], tree, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: dst, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if libs["ld-linux-x86-64.so.2"] == "" {
		return fmt.Errorf("no ld-linux-x86-64.so.2 among libc6's files in %s", tree)
	}
	return tw.WriteHeader(&tar.Header{Name: "lib64/ld-linux-x86-64.so.2", Linkname: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		Typeflag: tar.TypeSymlink, Mode: 0o777})
}
