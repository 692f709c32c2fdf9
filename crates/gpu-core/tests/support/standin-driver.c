/* STAND-IN for the NVIDIA driver's libnvidia-ml.so.1 and libcuda.so.1 (a test double, not
 * NVIDIA's libraries), built twice with the two SONAMEs (tests/support/mod.rs, stub_libs; the
 * benchmarks' scripts/bench/standin-runfile.sh). It keeps the part of their contract that
 * phoenix-gpu's gpu-check relies on, on a host whose device nodes are mknod stand-ins:
 *
 * - A node "opens" when open(O_RDWR) succeeds or fails with ENXIO (no driver behind the
 *   numbers: the device cgroup let it through). EPERM is the device cgroup refusing it.
 * - nvmlInit_v2: NVML_ERROR_UNKNOWN (999, "Unknown Error") unless /dev/nvidiactl opens (the real
 *   one fails the same way when the cgroup refuses nvidiactl); it never opens /dev/nvidia-uvm,
 *   as the real one does not. Its GPUs are the /dev/nvidia<minor> that open, in minor order,
 *   with the UUIDs of STANDIN_GPUS; the driver version is STANDIN_VERSION.
 * - cuInit: CUDA_ERROR_UNKNOWN (999) unless /dev/nvidiactl and /dev/nvidia-uvm open (the uvm
 *   case: NVML works, CUDA does not); its devices are NVML's. Contexts, a 1 MiB allocation,
 *   memset and copy back work in host memory.
 *
 * Build: gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -DSTANDIN_VERSION='"580.159.04"'
 *        -DSTANDIN_GPUS='"0:GPU-...,1:GPU-..."' -o libcuda.so.580.159.04 standin-driver.c
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef STANDIN_VERSION
#define STANDIN_VERSION "580.159.04"
#endif
#ifndef STANDIN_GPUS
#define STANDIN_GPUS "0:GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836,1:GPU-7fc3e24c-6572-362c-3b22-0d1167fae655"
#endif

static int opens(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) { close(fd); return 1; }
    return errno == ENXIO;
}

/* The GPUs that open: minors and UUIDs. */
static int nminor;
static unsigned minors[64];
static char uuids[64][64];
static void scan(void) {
    const char *p = STANDIN_GPUS;
    nminor = 0;
    while (*p && nminor < 64) {
        unsigned m = (unsigned)strtoul(p, (char **)&p, 10);
        if (*p != ':') break;
        p++;
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char dev[32];
        snprintf(dev, sizeof dev, "/dev/nvidia%u", m);
        if (n < sizeof uuids[0] && opens(dev)) {
            minors[nminor] = m;
            memcpy(uuids[nminor], p, n);
            uuids[nminor][n] = 0;
            nminor++;
        }
        p = e ? e + 1 : p + n;
    }
}

/* NVML */
int nvmlInit_v2(void) {
    if (!opens("/dev/nvidiactl")) return 999;
    scan();
    return 0;
}
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) { return r == 0 ? "Success" : r == 999 ? "Unknown Error" : "Invalid Argument"; }
int nvmlSystemGetDriverVersion(char *v, unsigned n) { snprintf(v, n, "%s", STANDIN_VERSION); return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = (unsigned)nminor; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **d) {
    if (i >= (unsigned)nminor) return 2;
    *d = (void *)(size_t)(i + 1);
    return 0;
}
int nvmlDeviceGetUUID(void *d, char *u, unsigned n) { snprintf(u, n, "%s", uuids[(size_t)d - 1]); return 0; }
int nvmlDeviceGetMinorNumber(void *d, unsigned *m) { *m = minors[(size_t)d - 1]; return 0; }

/* CUDA driver API */
int cuInit(unsigned flags) {
    (void)flags;
    if (!opens("/dev/nvidiactl") || !opens("/dev/nvidia-uvm")) return 999;
    scan();
    return 0;
}
int cuGetErrorName(int r, const char **s) {
    *s = r == 0 ? "CUDA_SUCCESS" : r == 999 ? "CUDA_ERROR_UNKNOWN" : r == 101 ? "CUDA_ERROR_INVALID_DEVICE" : "CUDA_ERROR_INVALID_VALUE";
    return 0;
}
int cuDriverGetVersion(int *v) { *v = 12080; return 0; }
int cuDeviceGetCount(int *n) { *n = nminor; return 0; }
int cuDeviceGet(int *d, int i) { if (i < 0 || i >= nminor) return 101; *d = i; return 0; }
int cuDeviceGetUuid(unsigned char *out, int d) {
    const char *u = uuids[d] + 4; /* after GPU- */
    int k = 0;
    for (; *u && k < 16; u++) {
        if (*u == '-') continue;
        unsigned hi = (unsigned)(*u <= '9' ? *u - '0' : *u - 'a' + 10);
        u++;
        unsigned lo = (unsigned)(*u <= '9' ? *u - '0' : *u - 'a' + 10);
        out[k++] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}
int cuDeviceGetPCIBusId(char *s, int n, int d) { snprintf(s, (size_t)n, "0000:00:%02x.0", 6 + d); return 0; }
int cuCtxCreate_v2(void **c, unsigned f, int d) { (void)f; *c = (void *)(size_t)(d + 1); return 0; }
int cuCtxDestroy_v2(void *c) { (void)c; return 0; }
int cuMemAlloc_v2(unsigned long long *p, size_t n) { void *m = malloc(n); if (!m) return 2; *p = (unsigned long long)(size_t)m; return 0; }
int cuMemsetD8_v2(unsigned long long p, unsigned char v, size_t n) { memset((void *)(size_t)p, v, n); return 0; }
int cuMemcpyDtoH_v2(void *dst, unsigned long long src, size_t n) { memcpy(dst, (void *)(size_t)src, n); return 0; }
int cuMemFree_v2(unsigned long long p) { free((void *)(size_t)p); return 0; }
