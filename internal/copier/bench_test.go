package copier

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The two COPY workloads the issue benchmarks against buildah: 1,000 small
// files and one 200 MB file. Sources stay in the page cache across
// iterations; each iteration copies into a fresh destination.

func smallFilesTree(b *testing.B) (string, int64) {
	src := b.TempDir()
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var total int64
	for i := range 1000 {
		dir := filepath.Join(src, "ctx", fmt.Sprintf("d%02d", i%20))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		n := 512 + i*7%3584 // 512 B to 4 KiB
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.txt", i)), data[:n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	return src, total
}

func largeFileTree(b *testing.B) (string, int64) {
	src := b.TempDir()
	const size = 200 << 20
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*31 + i>>8)
	}
	for i := 0; i < size/len(chunk); i++ {
		chunk[0] = byte(i)
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return src, size
}

func benchCopy(b *testing.B, src string, size int64, opts Options) {
	opts.Chown, _ = testOwner()
	base := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dest := filepath.Join(base, fmt.Sprint(i))
		if err := os.Mkdir(dest, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Copy(context.Background(), Source{Root: src}, dest, opts); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dest)
		b.StartTimer()
	}
}

func benchChecksum(b *testing.B, src string, size int64, opts Options) {
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Checksum(context.Background(), Source{Root: src}, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopySmallFiles(b *testing.B) {
	src, size := smallFilesTree(b)
	benchCopy(b, src, size, Options{Sources: []string{"ctx"}, Dest: "/app/"})
}

func BenchmarkChecksumSmallFiles(b *testing.B) {
	src, size := smallFilesTree(b)
	benchChecksum(b, src, size, Options{Sources: []string{"ctx"}, Dest: "/app/"})
}

func BenchmarkCopyLargeFile(b *testing.B) {
	src, size := largeFileTree(b)
	benchCopy(b, src, size, Options{Sources: []string{"big.bin"}, Dest: "/app/"})
}

func BenchmarkChecksumLargeFile(b *testing.B) {
	src, size := largeFileTree(b)
	benchChecksum(b, src, size, Options{Sources: []string{"big.bin"}, Dest: "/app/"})
}
