"""Simulated ESP32 flash: a littlefs image file mounted under the MicroPython unix port.

The device keeps its state on littlefs (os.VfsLfs2) on SPI NOR flash. Mounting the same
filesystem on an image file gives the simulator the same copy-on-write behaviour: every
block the filesystem programs goes to the image file at once (write(2), no user-space
buffer), so a SIGKILL of the simulator leaves the image exactly as a power cut leaves
the flash. A crash of the host kernel is not modelled (no fsync, it would cost ms per write).

    from sim.flash import mount_image
    dev = mount_image("/tmp/qterm.img", "/flash")
    open("/flash/hello", "w").write("hi")

Runs under .venv/bin/micropython (CPython has no VfsLfs2; FileBlockDevice alone works there).
"""
import os

_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6


class FileBlockDevice:
    """MicroPython block device (extended interface, with offsets) backed by a file.

    Erase fills the block with 0xFF like NOR flash. Counters `programmed` (bytes written
    by the filesystem), `erased` (blocks) and `read` (bytes) feed the benchmarks."""

    def __init__(self, path, block_size=4096, block_count=256):
        self.block_size = block_size
        self.block_count = block_count
        self.programmed = 0
        self.erased = 0
        self.read = 0
        try:
            self._f = open(path, "r+b")
        except OSError:
            self._f = open(path, "w+b")
            blank = b"\xff" * block_size
            for _ in range(block_count):
                self._f.write(blank)
        self._blank = None
        self.mount_point = None

    def readblocks(self, block, buf, offset=0):
        self._f.seek(block * self.block_size + offset)
        got = self._f.readinto(buf)
        if got != len(buf):
            raise OSError(5)   # EIO: the image is shorter than the filesystem thinks
        self.read += got

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # plain interface: whole blocks, erase implied
            offset = 0
            for i in range(len(buf) // self.block_size):
                self.ioctl(_IOCTL_BLOCK_ERASE, block + i)
        self._f.seek(block * self.block_size + offset)
        self._f.write(buf)
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            # erased flash reads 0xFF; written in small pieces: a block-sized buffer would be
            # 4 KiB of the device's heap (a real flash erase needs none)
            if self._blank is None:
                self._blank = b"\xff" * 256
            self._f.seek(arg * self.block_size)
            for _ in range(self.block_size // 256):
                self._f.write(self._blank)
            self.erased += 1
            return 0
        return 0   # init, deinit, sync: nothing to do, writes are already in the file

    def close(self):
        self._f.close()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def mount_image(image_path, mount_point, size_kb=1024, block_size=4096):
    """Mount the littlefs image at mount_point (e.g. "/flash"); returns the block device
    (its `mount_point` attribute is the absolute path actually mounted).

    The unix port only finds a mount through an absolute path: a relative mount point is
    made absolute here, and files on it must be opened by absolute path (or after
    os.chdir into it); a relative "state/flash/x" goes to the host filesystem instead.
    A missing image is created blank and formatted. An existing image that does not
    mount raises OSError instead of being formatted, so a damaged image is not hidden."""
    if not mount_point.startswith("/"):
        mount_point = os.getcwd().rstrip("/") + "/" + mount_point
    mount_point = mount_point.rstrip("/") or "/"
    fresh = not _exists(image_path) or os.stat(image_path)[6] == 0
    count = size_kb * 1024 // block_size
    if not fresh:
        count = os.stat(image_path)[6] // block_size
    dev = FileBlockDevice(image_path, block_size, count)
    if fresh:
        os.VfsLfs2.mkfs(dev)
    try:
        vfs = os.VfsLfs2(dev)
    except OSError as e:
        dev.close()
        raise OSError("%s: not a littlefs image (%r)" % (image_path, e))
    os.mount(vfs, mount_point)
    dev.mount_point = mount_point
    return dev


def umount(mount_point, dev=None):
    os.umount(mount_point)
    if dev is not None:
        dev.close()
