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
 *   --probe [-- TOOL...]
 *            the whole probe (probe/questions.sh and probe/gpu.sh where gpu-check answered):
 *            probe=1 and probe_direct=1 first, then besides the asked sections os_*= from
 *            /etc/os-release, apt_get=, dpkg=, installer_missing=, cmd= for each TOOL on PATH,
 *            lib=/placeholder= in the multiarch folder, cuda_json= (or cuda_nvcc=), smi_path=,
 *            and the programs the shell would run where a file does not answer: dpkg-query
 *            when dpkg's status was not read, nvcc --version when version.json is missing,
 *            nvidia-smi --query-gpu when --nvml was asked and NVML did not load; pids= (this
 *            process and those it started) and check_end=1 last. The probe script execs it
 *            with this option where it is in place, so a probe is this one process.
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
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
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
static int nvml_ok; /* nvml_lib=ok was printed */
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
    nvml_ok = 1;
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
static int dpkg_ok; /* dpkg_db=ok was printed */
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
    dpkg_ok = 1;
}

/* --probe: what the shell parts of the probe answer (probe/questions.sh, probe/gpu.sh) */
static char **envp;     /* set by start_c from the stack: no glibc start-up code ran */
static int forks;       /* the processes this one started (pids= counts them) */
static char cap[65536]; /* a program's output */

static const char *path_var(void) {
    for (char **e = envp; e && *e; e++) if (!strncmp(*e, "PATH=", 5)) return *e + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; /* dash's default */
}
static int regular_x(const char *p) {
    struct stat st;
    return syscall(SYS_newfstatat, AT_FDCWD, p, &st, 0) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}
/* `command -v NAME` for a program: the first DIR/NAME on PATH that is an executable regular
 * file, into out. An empty entry is the current directory for command -v (empty_cwd) and is
 * skipped by the probe's own nvidia-smi loop. */
static int on_path(const char *name, int empty_cwd, char *out, size_t outlen) {
    const char *p = path_var();
    size_t nl = strlen(name);
    for (;;) {
        const char *e = p; while (*e && *e != ':') e++;
        size_t dl = (size_t)(e - p);
        const char *dir = dl ? p : ".";
        if (!dl) dl = empty_cwd ? 1 : 0;
        if (dl && dl + 1 + nl + 1 <= outlen) {
            memcpy(out, dir, dl); out[dl] = '/'; memcpy(out + dl + 1, name, nl + 1);
            if (regular_x(out)) return 1;
        }
        if (!*e) return 0;
        p = e + 1;
    }
}
static int have(const char *name) { char p[4096]; return on_path(name, 1, p, sizeof p); }

/* Runs argv (argv[0] a path) with stdin from /dev/null and stdout and stderr into cap (what
 * does not fit is read and dropped), killed after secs seconds. Returns its exit status, 124
 * when it was killed for the time (as timeout(1) says), 126/127 when it could not be executed,
 * -1 when no process could be started. */
static int run_capture(char *const argv[], int secs) {
    int p[2];
    size_t n = 0;
    cap[0] = 0;
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in > 0) { dup2(in, 0); close(in); }
        dup2(p[1], 1); dup2(p[1], 2);
        if (p[1] > 2) close(p[1]);
        close(p[0]);
        execve(argv[0], argv, envp);
        _exit(errno == ENOENT ? 127 : 126);
    }
    forks++;
    close(p[1]);
    time_t end = time(0) + secs;
    int timed_out = 0;
    for (;;) {
        time_t now = time(0);
        if (now >= end) { kill(pid, SIGKILL); timed_out = 1; break; }
        struct pollfd pf = {p[0], POLLIN, 0};
        int r = poll(&pf, 1, (int)(end - now) * 1000);
        if (r < 0 && errno != EINTR) break;
        if (r <= 0) continue;
        char t[4096];
        ssize_t k = read(p[0], t, sizeof t);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        size_t room = sizeof cap - 1 - n, take = (size_t)k < room ? (size_t)k : room;
        memcpy(cap + n, t, take); n += take;
    }
    close(p[0]);
    cap[n] = 0;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (timed_out) return 124;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}

/* Each line of cap (NUL-terminated in place, one after the other). */
static char *next_line(char **at) {
    char *l = *at;
    if (!*l) return 0;
    char *e = l; while (*e && *e != '\n') e++;
    *at = *e ? e + 1 : e;
    *e = 0;
    return l;
}

/* A small text file into cap (NUL-terminated); 0 when it cannot be read. */
static int slurp(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return 0;
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return 0; }
    size_t n = 0; ssize_t r;
    while (n < sizeof cap - 1 && (r = read(fd, cap + n, sizeof cap - 1 - n)) > 0) n += (size_t)r;
    close(fd);
    cap[n] = 0;
    return 1;
}

/* ID, VERSION_ID, VERSION_CODENAME of /etc/os-release, one pair of quotes taken off. */
static void os_release(void) {
    if (!slurp("/etc/os-release")) return;
    char *at = cap, *l;
    while ((l = next_line(&at))) {
        char *v = strchr(l, '=');
        if (!v) continue;
        *v++ = 0;
        const char *k = !strcmp(l, "ID") ? "os_id" : !strcmp(l, "VERSION_ID") ? "os_version_id"
                      : !strcmp(l, "VERSION_CODENAME") ? "os_codename" : 0;
        if (!k) continue;
        size_t vl = strlen(v);
        if (vl && v[0] == '"') { v++; vl--; }
        if (vl && v[vl - 1] == '"') v[--vl] = 0;
        if (vl && v[0] == '\'') { v++; vl--; }
        if (vl && v[vl - 1] == '\'') v[--vl] = 0;
        kv(k, v);
    }
}

/* The versioned driver libraries in the multiarch folder (where host-libs binds): lib= for a
 * regular file, placeholder= for an empty one. */
static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void libs_listing(void) {
    static const char dir[] = "/usr/lib/x86_64-linux-gnu";
    static const char *const stems[] = {"libnvidia-ml.so.", "libcuda.so."};
    static char names[64][256];
    char *sorted[64];
    for (int s = 0; s < 2; s++) {
        DIR *d = opendir(dir);
        if (!d) return;
        int n = 0;
        struct dirent *e;
        size_t sl = strlen(stems[s]);
        while ((e = readdir(d)) && n < 64) {
            size_t nl = strlen(e->d_name);
            if (nl <= sl || nl >= sizeof names[0] || strncmp(e->d_name, stems[s], sl)) continue;
            memcpy(names[n], e->d_name, nl + 1);
            sorted[n] = names[n];
            n++;
        }
        closedir(d);
        qsort(sorted, (size_t)n, sizeof sorted[0], by_name);
        for (int i = 0; i < n; i++) {
            char p[512];
            struct stat st;
            memcpy(p, dir, sizeof dir - 1); p[sizeof dir - 1] = '/';
            memcpy(p + sizeof dir, sorted[i], strlen(sorted[i]) + 1);
            if (syscall(SYS_newfstatat, AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
            kv(st.st_size > 0 ? "lib" : "placeholder", p);
        }
    }
}

/* The CUDA toolkit's version: "version" of the "cuda" entry of version.json, else nvcc's
 * "release X.Y". */
static void cuda_version(void) {
    if (slurp("/usr/local/cuda/version.json")) {
        char *at = cap, *l;
        int in_cuda = 0;
        while ((l = next_line(&at))) {
            if (strstr(l, "\"cuda\"")) in_cuda = 1;
            char *v;
            if (!in_cuda || !(v = strstr(l, "\"version\""))) continue;
            v += 9;
            char *q = strchr(v, '"');
            if (q) v = q + 1;
            q = strchr(v, '"');
            if (q) *q = 0;
            if (*v) { kv("cuda_json", v); return; }
            break;
        }
    }
    static char nvcc[] = "/usr/local/cuda/bin/nvcc", ver[] = "--version";
    if (!regular_x(nvcc)) return;
    char *argv[] = {nvcc, ver, 0};
    if (run_capture(argv, 60) < 0) return;
    char *at = cap, *l;
    while ((l = next_line(&at))) {
        char *r = 0;
        for (char *f = l; (f = strstr(f, "release ")); f++) if (f[8] >= '0' && f[8] <= '9') r = f + 8;
        if (!r) continue;
        char *e = r; while ((*e >= '0' && *e <= '9') || *e == '.') e++;
        *e = 0;
        kv("cuda_nvcc", r);
        return;
    }
}

/* dpkg-query for the packages of the list, where dpkg's status file was not read. */
static void dpkg_query(const char *list) {
    char path[4096];
    if (!on_path("dpkg-query", 1, path, sizeof path)) return;
    static char w[] = "-W", f[] = "-f=${db:Status-Abbrev}|${Package}\\n", names[4096];
    char *argv[72] = {path, w, f};
    int n = 3;
    size_t ll = strlen(list);
    if (ll >= sizeof names) return;
    memcpy(names, list, ll + 1);
    for (char *s = names; *s && n < 71;) {
        char *e = s; while (*e && *e != ',') e++;
        int last = !*e;
        *e = 0;
        if (*s) argv[n++] = s;
        if (last) break;
        s = e + 1;
    }
    argv[n] = 0;
    if (run_capture(argv, 60) < 0) return;
    char *at = cap, *l;
    while ((l = next_line(&at))) {
        char *bar = strchr(l, '|');
        if (!bar) continue;
        *bar = 0;
        put("pkg="); putv(l); putc1(' '); putv(bar + 1); putc1('\n');
    }
}

/* nvidia-smi on PATH (smi_path=), and its GPU query where NVML was asked and did not load. */
static void smi(int asked_nvml) {
    char path[4096];
    if (!on_path("nvidia-smi", 0, path, sizeof path)) return;
    kv("smi_path", path);
    if (!asked_nvml || nvml_ok) return;
    static char q[] = "--query-gpu=index,uuid,driver_version", fmt[] = "--format=csv,noheader";
    char *argv[] = {path, q, fmt, 0};
    int rc = run_capture(argv, 60);
    char *at = cap, *l;
    while ((l = next_line(&at))) if (*l) kv("smi", l);
    kvl("smi_rc", rc);
}

static void run_probe(int asked_nvml, const char *dpkg, char **tools, int ntools) {
    os_release();
    if (have("apt-get")) kv("apt_get", "1");
    static const char *const installer[] = {"ldconfig", "grep", "dmesg", "tail", "modprobe", "rmmod", "lsmod", "depmod"};
    for (size_t i = 0; i < sizeof installer / sizeof installer[0]; i++)
        if (!have(installer[i])) kv("installer_missing", installer[i]);
    if (have("dpkg")) kv("dpkg", "1");
    libs_listing();
    cuda_version();
    if (dpkg && !dpkg_ok) dpkg_query(dpkg);
    for (int i = 0; i < ntools; i++) if (*tools[i] && have(tools[i])) kv("cmd", tools[i]);
    smi(asked_nvml);
}

static long num(const char *s) { long v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0'); return v; }

int main(int argc, char **argv) {
    int do_sys = 0, do_dev = 0, do_libs = 0, do_cuda = 0, ctx = 0, do_nvml = 0, probe = 0; long hold = 0;
    const char *opens = 0, *dpkg = 0;
    char **tools = 0; int ntools = 0;
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
        else if (!strcmp(a, "--probe")) probe = 1;
        else if (!strcmp(a, "--") && probe) { tools = argv + i + 1; ntools = argc - i - 1; break; }
        else { kv("usage_error", a); flush(); return 2; }
    }
    if (probe) {
        /* Written at once: output that stops after these lines is a gpu-check that failed. */
        put("probe=1\nprobe_direct=1\ngpu_check_present=1\n");
        flush();
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
    if (probe) {
        run_probe(do_nvml, dpkg, tools, ntools);
        kvl("pids", 1 + forks);
    }
    kv("check_end", "1");
    flush();
    return 0;
}

/* Entry point without glibc's start files: a program linked against glibc 2.34+ through crt1.o
 * needs __libc_start_main@GLIBC_2.34 and so fails on older glibc. ld.so has already set up libc
 * (and TLS) for a dynamically linked program when it jumps here. */
__attribute__((used, force_align_arg_pointer)) static void start_c(long *sp) {
    int argc = (int)sp[0];
    envp = (char **)(sp + 1 + argc + 1);
    exit(main(argc, (char **)(sp + 1)));
}
__asm__(".text\n.global _start\n.type _start,@function\n_start:\n xor %ebp,%ebp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
