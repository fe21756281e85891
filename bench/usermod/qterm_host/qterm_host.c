// Bench-only helper linked into the MicroPython unix ports that bench/unixport.py builds, so
// that sim/launch.py can run the simulator under them (QTERM_MICROPYTHON) as it does in process:
//
//  - QTERM_ROM_FILE=PATH: the ROMFS image is mapped read-only before MicroPython starts and its
//    place published as QTERM_ROM=ADDR:SIZE, which sim/main.py mounts with vfs.VfsRom. The
//    bytecode then runs in place and costs no heap, as from a ROMFS partition on the ESP32
//    (reading the image into a bytearray would put all of it on the heap).
//  - QTERM_HOST_RESTART=1: exit code 3 (the firmware's soft reset in the simulator) runs the
//    same command line again in this process: same PID, fresh device, sockets closed.
//  - QTERM_HOST=1 is set so that sim/launch.py can tell an executable has this helper.
//
// It adds no Python module and no heap use: everything happens in a constructor and an
// exit handler (glibc's on_exit, which sees the exit status).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char **qterm_argv;

static void qterm_restart(int status, void *arg) {
    (void)arg;
    if (status != 3 || qterm_argv == NULL) {
        return;
    }
    fflush(NULL);
    for (int fd = 3; fd < 4096; fd++) {
        close(fd);  // the device's sockets (control port, broker) die with the reset
    }
    execv(qterm_argv[0], qterm_argv);
    fprintf(stderr, "qterm-host: restart failed: cannot run %s\n", qterm_argv[0]);
}

// The whole command line as the kernel started it: with a loader prefix
// (ld-linux.so.2 --library-path ... micropython ...) that prefix is part of it.
static char **qterm_cmdline(void) {
    int fd = open("/proc/self/cmdline", O_RDONLY);
    if (fd < 0) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t n;
    while (buf != NULL && (n = read(fd, buf + len, cap - len)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    close(fd);
    if (buf == NULL || len == 0) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    size_t count = 0;
    for (size_t i = 0; i < len; i++) {
        count += buf[i] == 0;
    }
    char **argv = malloc((count + 1) * sizeof(char *));
    if (argv == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < len && k < count; i += strlen(buf + i) + 1) {
        argv[k++] = buf + i;
    }
    argv[k] = NULL;
    return argv;
}

__attribute__((constructor)) static void qterm_host_init(void) {
    setenv("QTERM_HOST", "1", 1);
    const char *path = getenv("QTERM_ROM_FILE");
    if (path != NULL && *path) {
        struct stat st;
        void *addr = MAP_FAILED;
        int fd = open(path, O_RDONLY);
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
            addr = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        }
        if (fd >= 0) {
            close(fd);
        }
        if (addr == MAP_FAILED) {
            fprintf(stderr, "qterm-host: cannot map the ROMFS image %s\n", path);
            _exit(2);
        }
        char val[48];
        snprintf(val, sizeof(val), "%lu:%lu", (unsigned long)(uintptr_t)addr, (unsigned long)st.st_size);
        setenv("QTERM_ROM", val, 1);
    }
    const char *restart = getenv("QTERM_HOST_RESTART");
    if (restart != NULL && strcmp(restart, "1") == 0) {
        qterm_argv = qterm_cmdline();
        if (qterm_argv != NULL) {
            on_exit(qterm_restart, NULL);
        }
    }
}
