/* gpu-check: answers the GPU questions of phoenix-gpu's probe inside a container, as key=value
 * lines on stdout (the keys are documented in crates/gpu-core/src/container/probe/mod.rs).
 *
 *   gpu-check [--sys] [--dev] [--open PATH[,PATH...]] [--libs] [--nvml] [--cuda | --ctx]
 *             [--hold SECONDS]
 *
 *   --sys    arch= (uname), disk_free_kb= (statvfs of /)
 *   --dev    dev= for every NVIDIA node under /dev and /dev/nvidia-caps (type, major:minor in hex)
 *   --open   node=PATH ERRNO for each node opened read-write (ok, EPERM: the device cgroup
 *            refuses it, ENXIO: no driver behind the numbers, ...)
 *   --libs   loaded=SONAME PATH for libnvidia-ml.so.1 and libcuda.so.1 as the loader resolves
 *            them (dlopen, no initialisation)
 *   --nvml   nvml_*: what nvidia-smi asks (driver version, every GPU's UUID and minor)
 *   --cuda   cuda_*: cuInit, the devices and their UUIDs; --ctx also a context and a 1 MiB
 *            alloc/memset/readback on each device; --hold keeps the contexts open N seconds
 *   --dpkg   pkg=ii NAME for each installed package of the list (NAME, or PREFIX* for every
 *            package whose name starts with PREFIX), read from /var/lib/dpkg/status as
 *            dpkg-query would; dpkg_db=ok when it was read, dpkg_db=pending when dpkg's
 *            journal (/var/lib/dpkg/updates) holds entries the status file does not have yet
 *
 * Built to run in any x86-64 glibc container, whatever its glibc (Ubuntu 20.04 has 2.31, RHEL 8
 * 2.28): linked without crt1 (own _start), every glibc symbol pinned to GLIBC_2.2.5, no stack
 * protector or fortify (their symbols are newer). gpu-core's build.rs has the command line and a
 * test checks the ELF's version needs.
 */
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver memcpy,memcpy@GLIBC_2.2.5");
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static char buf[8192];
static size_t blen;
static void flush(void) { size_t o = 0; while (o < blen) { ssize_t n = write(1, buf + o, blen - o); if (n <= 0) break; o += (size_t)n; } blen = 0; }
static void put(const char *s) { while (*s) { if (blen == sizeof buf) flush(); buf[blen++] = *s++; } }
static void putc1(char c) { char s[2] = {c, 0}; put(s); }
static void putu(unsigned long u, unsigned base) { char t[24]; int i = 0; do { t[i++] = "0123456789abcdef"[u % base]; u /= base; } while (u); while (i) putc1(t[--i]); }
static void putl(long v) { if (v < 0) { putc1('-'); putu(-(unsigned long)v, 10); } else putu((unsigned long)v, 10); }
/* a value: printable ASCII without newlines; anything else as '?' */
static void putv(const char *s) { for (; *s; s++) putc1(*s >= 0x20 && *s < 0x7f ? *s : '?'); }
static void kv(const char *k, const char *v) { put(k); putc1('='); putv(v); putc1('\n'); }
static void kvl(const char *k, long v) { put(k); putc1('='); putl(v); putc1('\n'); }
static void kvi(const char *p, int i, const char *s, const char *v) { put(p); putl(i); put(s); putc1('='); putv(v); putc1('\n'); }
static void kvil(const char *p, int i, const char *s, long v) { put(p); putl(i); put(s); putc1('='); putl(v); putc1('\n'); }

static const char *errname(int e) {
    switch (e) {
    case 0: return "ok"; case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case ENXIO: return "ENXIO";
    case EACCES: return "EACCES"; case ENODEV: return "ENODEV"; case EIO: return "EIO"; case EBUSY: return "EBUSY";
    case ENOTDIR: return "ENOTDIR"; case EINVAL: return "EINVAL"; case EROFS: return "EROFS"; case EISDIR: return "EISDIR";
    default: return "other";
    }
}

/* --sys */
static void run_sys(void) {
    struct utsname u;
    if (uname(&u) == 0) kv("arch", u.machine);
    struct statvfs s;
    if (statvfs("/", &s) == 0) kvl("disk_free_kb", (long)((unsigned long long)s.f_bavail * s.f_frsize / 1024));
}

/* --dev: the NVIDIA nodes under /dev, as the probe's shell loop reports them */
static void dev_line(const char *path) {
    struct stat st;
    /* the raw system call: glibc before 2.33 exports no stat symbol (only __xstat) */
    if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
    put("dev="); putv(path);
    if (S_ISCHR(st.st_mode)) {
        unsigned long long d = st.st_rdev;
        unsigned long ma = ((d >> 8) & 0xfff) | ((d >> 32) & ~0xfffULL);
        unsigned long mi = (d & 0xff) | ((d >> 12) & ~0xffULL);
        put(" c "); putu(ma, 16); putc1(':'); putu(mi, 16);
    } else if (S_ISDIR(st.st_mode)) put(" d");
    else put(" f");
    putc1('\n');
}
static void scan(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    size_t dl = strlen(dir), pl = strlen(prefix);
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, pl) || dl + 1 + nl + 1 > sizeof p) continue;
        memcpy(p, dir, dl); p[dl] = '/'; memcpy(p + dl + 1, e->d_name, nl + 1);
        dev_line(p);
    }
    closedir(d);
}

/* --open a,b,c */
static void run_open(const char *list) {
    char p[512];
    while (*list) {
        const char *end = list;
        while (*end && *end != ',') end++;
        size_t n = (size_t)(end - list);
        if (n && n < sizeof p) {
            memcpy(p, list, n); p[n] = 0;
            int fd = open(p, O_RDWR | O_CLOEXEC | O_NOCTTY);
            int e = fd < 0 ? errno : 0;
            if (fd >= 0) close(fd);
            put("node="); putv(p); putc1(' '); put(errname(e)); putc1('\n');
        }
        list = *end ? end + 1 : end;
    }
}

/* The file a loaded library maps, from /proc/self/maps: the loader's answer, links resolved. */
static void loaded(const char *soname, const char *stem) {
    static char m[65536];
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_t n = 0; ssize_t r;
    while (n < sizeof m - 1 && (r = read(fd, m + n, sizeof m - 1 - n)) > 0) n += (size_t)r;
    close(fd);
    m[n] = 0;
    size_t sl = strlen(stem);
    for (char *line = m; *line;) {
        char *nl = line; while (*nl && *nl != '\n') nl++;
        char save = *nl; *nl = 0;
        char *path = line; while (*path && *path != '/') path++;
        char *base = path; for (char *q = path; *q; q++) if (*q == '/') base = q + 1;
        if (*path && !strncmp(base, stem, sl)) { put("loaded="); put(soname); putc1(' '); putv(path); putc1('\n'); *nl = save; return; }
        *nl = save; line = *nl ? nl + 1 : nl;
    }
}

typedef int CUresult; typedef int CUdevice; typedef void *CUcontext; typedef unsigned long long CUdeviceptr;
typedef struct { unsigned char b[16]; } CUuuid;
static void *cu;
#define SYM(name) dlsym(cu, name)

static void uuid_str(const unsigned char *u, char *out) {
    static const char hx[] = "0123456789abcdef"; char *p = out; int i;
    memcpy(p, "GPU-", 4); p += 4;
    for (i = 0; i < 16; i++) { if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-'; *p++ = hx[u[i] >> 4]; *p++ = hx[u[i] & 15]; }
    *p = 0;
}

static const char *cuname(CUresult r) {
    CUresult (*f)(CUresult, const char **) = (CUresult (*)(CUresult, const char **))SYM("cuGetErrorName");
    const char *s = 0;
    if (f && f(r, &s) == 0 && s) return s;
    return "unknown";
}
static void cures(const char *k, CUresult r) { put(k); putc1('='); putl(r); putc1(' '); putv(cuname(r)); putc1('\n'); }

static void *open_cuda(void) {
    if (!cu) cu = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    return cu;
}

static int run_cuda(int ctx, long hold) {
    if (!open_cuda()) { kv("cuda_lib", "missing"); const char *e = dlerror(); kv("cuda_lib_error", e ? e : ""); return 0; }
    CUresult (*init)(unsigned) = (CUresult (*)(unsigned))SYM("cuInit");
    CUresult (*drv)(int *) = (CUresult (*)(int *))SYM("cuDriverGetVersion");
    CUresult (*count)(int *) = (CUresult (*)(int *))SYM("cuDeviceGetCount");
    CUresult (*get)(CUdevice *, int) = (CUresult (*)(CUdevice *, int))SYM("cuDeviceGet");
    CUresult (*uuid)(CUuuid *, CUdevice) = (CUresult (*)(CUuuid *, CUdevice))SYM("cuDeviceGetUuid");
    CUresult (*pci)(char *, int, CUdevice) = (CUresult (*)(char *, int, CUdevice))SYM("cuDeviceGetPCIBusId");
    CUresult (*cc)(CUcontext *, unsigned, CUdevice) = (CUresult (*)(CUcontext *, unsigned, CUdevice))SYM("cuCtxCreate_v2");
    CUresult (*cd)(CUcontext) = (CUresult (*)(CUcontext))SYM("cuCtxDestroy_v2");
    CUresult (*ma)(CUdeviceptr *, size_t) = (CUresult (*)(CUdeviceptr *, size_t))SYM("cuMemAlloc_v2");
    CUresult (*ms)(CUdeviceptr, unsigned char, size_t) = (CUresult (*)(CUdeviceptr, unsigned char, size_t))SYM("cuMemsetD8_v2");
    CUresult (*cp)(void *, CUdeviceptr, size_t) = (CUresult (*)(void *, CUdeviceptr, size_t))SYM("cuMemcpyDtoH_v2");
    CUresult (*mf)(CUdeviceptr) = (CUresult (*)(CUdeviceptr))SYM("cuMemFree_v2");
    if (!init || !count || !get || !uuid || !pci || !cc || !cd || !ma || !ms || !cp || !mf) { kv("cuda_lib", "incomplete"); return 0; }
    kv("cuda_lib", "ok");
    CUresult r = init(0);
    cures("cuda_init", r);
    if (r) return 0;
    int v = 0; if (drv && drv(&v) == 0) kvl("cuda_driver_api", v);
    int n = 0; r = count(&n); if (r) { cures("cuda_count_error", r); return 0; }
    kvl("cuda_count", n);
    CUcontext held[64]; int nh = 0;
    for (int i = 0; i < n && i < 64; i++) {
        CUdevice d; if ((r = get(&d, i))) { put("cuda_dev"); putl(i); cures("_error", r); continue; }
        CUuuid u; char us[64];
        if (uuid(&u, d) == 0) { uuid_str(u.b, us); kvi("cuda_dev", i, "_uuid", us); }
        char pb[32]; if (pci(pb, sizeof pb, d) == 0) kvi("cuda_dev", i, "_pci", pb);
        if (!ctx) continue;
        CUcontext c = 0; r = cc(&c, 0, d);
        put("cuda_dev"); putl(i); cures("_ctx", r);
        if (r) continue;
        CUdeviceptr p = 0; unsigned char back[4096]; size_t sz = 1 << 20;
        r = ma(&p, sz);
        if (!r) r = ms(p, 0xa5, sz);
        if (!r) r = cp(back, p, sizeof back);
        if (!r) { for (size_t k = 0; k < sizeof back; k++) if (back[k] != 0xa5) { r = -1; break; } }
        put("cuda_dev"); putl(i); if (r == -1) put("_mem=-1 readback-mismatch\n"); else cures("_mem", r);
        if (p) mf(p);
        if (hold > 0) held[nh++] = c; else cd(c);
    }
    if (hold > 0) {
        kvl("hold_pid", getpid()); kvl("hold_seconds", hold); flush();
        struct timespec ts = {hold, 0}; nanosleep(&ts, 0);
        for (int i = 0; i < nh; i++) cd(held[i]);
        kv("hold", "done");
    }
    return 0;
}

typedef int nvmlReturn_t; typedef void *nvmlDevice_t;
static void *nvml;
static void *open_nvml(void) {
    if (!nvml) nvml = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
    return nvml;
}
static void run_nvml(void) {
    void *h = open_nvml();
    if (!h) { kv("nvml_lib", "missing"); return; }
    nvmlReturn_t (*init)(void) = (nvmlReturn_t (*)(void))dlsym(h, "nvmlInit_v2");
    nvmlReturn_t (*ver)(char *, unsigned) = (nvmlReturn_t (*)(char *, unsigned))dlsym(h, "nvmlSystemGetDriverVersion");
    nvmlReturn_t (*count)(unsigned *) = (nvmlReturn_t (*)(unsigned *))dlsym(h, "nvmlDeviceGetCount_v2");
    nvmlReturn_t (*get)(unsigned, nvmlDevice_t *) = (nvmlReturn_t (*)(unsigned, nvmlDevice_t *))dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned) = (nvmlReturn_t (*)(nvmlDevice_t, char *, unsigned))dlsym(h, "nvmlDeviceGetUUID");
    nvmlReturn_t (*minor)(nvmlDevice_t, unsigned *) = (nvmlReturn_t (*)(nvmlDevice_t, unsigned *))dlsym(h, "nvmlDeviceGetMinorNumber");
    const char *(*es)(nvmlReturn_t) = (const char *(*)(nvmlReturn_t))dlsym(h, "nvmlErrorString");
    nvmlReturn_t (*shut)(void) = (nvmlReturn_t (*)(void))dlsym(h, "nvmlShutdown");
    if (!init || !ver || !count || !get || !uuid) { kv("nvml_lib", "incomplete"); return; }
    kv("nvml_lib", "ok");
    nvmlReturn_t r = init();
    put("nvml_init="); putl(r); putc1(' '); putv(es ? es(r) : ""); putc1('\n');
    if (r) return;
    char v[96]; if (ver(v, sizeof v) == 0) kv("nvml_driver", v);
    unsigned n = 0; if (count(&n) == 0) kvl("nvml_count", n);
    for (unsigned i = 0; i < n && i < 64; i++) {
        nvmlDevice_t d; if (get(i, &d)) continue;
        char u[96]; if (uuid(d, u, sizeof u) == 0) kvi("nvml_dev", (int)i, "_uuid", u);
        unsigned m; if (minor && minor(d, &m) == 0) kvil("nvml_dev", (int)i, "_minor", m);
    }
    if (shut) shut();
}

/* --dpkg a,b*,c: the installed packages of the list, from dpkg's status file */
static int listed(const char *name, size_t nl, const char *list) {
    while (*list) {
        const char *end = list; while (*end && *end != ',') end++;
        size_t n = (size_t)(end - list);
        if (n && list[n - 1] == '*') { if (nl >= n - 1 && !strncmp(name, list, n - 1)) return 1; }
        else if (n == nl && !strncmp(name, list, n)) return 1;
        list = *end ? end + 1 : end;
    }
    return 0;
}
static void run_dpkg(const char *list) {
    DIR *u = opendir("/var/lib/dpkg/updates");
    if (u) {
        struct dirent *e; int pending = 0;
        while ((e = readdir(u))) if (e->d_name[0] >= '0' && e->d_name[0] <= '9') pending = 1;
        closedir(u);
        if (pending) { kv("dpkg_db", "pending"); return; }
    }
    int fd = open("/var/lib/dpkg/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) { kv("dpkg_db", "missing"); return; }
    static char chunk[65536];
    static char line[4096];
    size_t ll = 0; int long_line = 0;
    char pkg[256] = ""; int installed = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) { close(fd); kv("dpkg_db", "unreadable"); return; }
        for (ssize_t i = 0; i <= r; i++) {
            int end = i == r;
            if (end && r > 0) break;
            char c = end ? '\n' : chunk[i];
            if (c != '\n') { if (ll < sizeof line - 1) line[ll++] = c; else long_line = 1; continue; }
            line[ll] = 0;
            if (ll == 0) { /* end of a paragraph */
                if (*pkg && installed && listed(pkg, strlen(pkg), list)) { put("pkg=ii "); putv(pkg); putc1('\n'); }
                pkg[0] = 0; installed = 0;
            } else if (!long_line && !strncmp(line, "Package: ", 9) && ll - 9 < sizeof pkg) {
                memcpy(pkg, line + 9, ll - 9 + 1);
            } else if (!long_line && !strncmp(line, "Status: ", 8)) {
                installed = !strcmp(line + 8, "install ok installed");
            }
            ll = 0; long_line = 0;
        }
        if (r == 0) break;
    }
    close(fd);
    kv("dpkg_db", "ok");
}

static long num(const char *s) { long v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0'); return v; }

int main(int argc, char **argv) {
    int do_sys = 0, do_dev = 0, do_libs = 0, do_cuda = 0, ctx = 0, do_nvml = 0; long hold = 0;
    const char *opens = 0, *dpkg = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--open") && i + 1 < argc) opens = argv[++i];
        else if (!strcmp(a, "--dpkg") && i + 1 < argc) dpkg = argv[++i];
        else if (!strcmp(a, "--sys")) do_sys = 1;
        else if (!strcmp(a, "--dev")) do_dev = 1;
        else if (!strcmp(a, "--libs")) do_libs = 1;
        else if (!strcmp(a, "--nvml")) do_nvml = 1;
        else if (!strcmp(a, "--cuda")) do_cuda = 1;
        else if (!strcmp(a, "--ctx")) { do_cuda = 1; ctx = 1; }
        else if (!strcmp(a, "--hold") && i + 1 < argc) hold = num(argv[++i]);
        else { kv("usage_error", a); flush(); return 2; }
    }
    kv("check_version", "1");
    if (do_sys) run_sys();
    if (do_dev) { scan("/dev", "nvidia"); scan("/dev/nvidia-caps", ""); }
    if (opens) run_open(opens);
    if (dpkg) run_dpkg(dpkg);
    if (do_libs) {
        if (open_nvml()) loaded("libnvidia-ml.so.1", "libnvidia-ml.so.");
        if (open_cuda()) loaded("libcuda.so.1", "libcuda.so.");
    }
    if (do_nvml) run_nvml();
    if (do_cuda) run_cuda(ctx, hold);
    kv("check_end", "1");
    flush();
    return 0;
}

/* Entry point without glibc's start files: a program linked against glibc 2.34+ through crt1.o
 * needs __libc_start_main@GLIBC_2.34 and so fails on older glibc. ld.so has already set up libc
 * (and TLS) for a dynamically linked program when it jumps here. */
__attribute__((used, force_align_arg_pointer)) static void start_c(long *sp) {
    int argc = (int)sp[0];
    exit(main(argc, (char **)(sp + 1)));
}
__asm__(".text\n.global _start\n.type _start,@function\n_start:\n xor %ebp,%ebp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
