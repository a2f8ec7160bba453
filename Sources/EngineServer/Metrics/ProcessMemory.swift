import CLinux
import Glibc

/// Bytes the C heap has handed out and not had back: glibc's `mallinfo2()`
/// (declared by `<malloc.h>`, which the Glibc module does not export, hence
/// CLinux): in-use chunks of every arena (`uordblks`) plus chunks served by
/// `mmap` (`hblkhd`). Swift's allocations go through `malloc`, so this is the
/// engine's heap; resident bytes (`residentBytes()`, /proc/self/statm) add
/// code, stacks and memory `malloc` keeps free.
func heapBytes() -> Int {
    let info = mallinfo2()
    return Int(info.uordblks) + Int(info.hblkhd)
}
