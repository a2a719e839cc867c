/*
 * A stand-in for the kernel's sev-guest driver (there is no /dev/sev-guest outside an
 * SEV-SNP guest), loaded with LD_PRELOAD into the test's child process. It takes over
 * open("/dev/sev-guest") and the ioctls on that descriptor, and reads and writes the
 * caller's memory through the kernel's own UAPI structures from <linux/sev-guest.h>
 * (struct snp_guest_request_ioctl, snp_ext_report_req, snp_report_req,
 * snp_report_resp), compiled here by the system's C compiler. So a field that our side
 * (the sev crate's request and response types) placed elsewhere than the kernel is read
 * wrong here or written where our side does not look, and the test fails.
 *
 * It answers SNP_GET_EXT_REPORT as the driver does (drivers/virt/coco/sev-guest):
 *   - a certificate buffer smaller than the host's certificate table: -1/EIO, the
 *     required length in certs_len, exitinfo2 = SNP_GUEST_VMM_ERR(INVALID_LEN);
 *   - otherwise the table copied to certs_address and the firmware's MSG_REPORT_RSP
 *     (status, report_size, 24 reserved bytes, the report) in snp_report_resp.data.
 * The report and the VCEK are the recorded ones named by STAND_IN_REPORT and
 * STAND_IN_VCEK; every request is described, one line each, in STAND_IN_LOG.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sev-guest.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define PAGE 4096u
/* The VCEK's GUID in the GHCB certificate table, 63da758d-e664-4564-adc5-f4b93be8accd. */
static const uint8_t VCEK_GUID[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                      0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};

_Static_assert(sizeof(struct snp_report_req) == 96, "snp_report_req");
_Static_assert(sizeof(struct snp_report_resp) == 4000, "snp_report_resp");

static int fake_fd = -1;

static void logf_(const char *fmt, ...) {
    const char *path = getenv("STAND_IN_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

static size_t read_file(const char *env, uint8_t *buf, size_t cap) {
    const char *path = getenv(env);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int take_over(const char *path, int flags) {
    if (!path || strcmp(path, "/dev/sev-guest") != 0)
        return -2;
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    fake_fd = real_open("/dev/null", flags & O_ACCMODE);
    logf_("open /dev/sev-guest flags=%#x", flags);
    return fake_fd;
}

/* open() and open64() (Rust's std calls the latter): /dev/sev-guest is ours, any other
 * path goes to the C library's `symbol`. */
static int open_as(const char *symbol, const char *path, int flags, unsigned mode) {
    int fd = take_over(path, flags);
    if (fd != -2)
        return fd;
    int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, symbol);
    return real(path, flags, mode);
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    unsigned mode = va_arg(ap, unsigned);
    va_end(ap);
    return open_as("open", path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    unsigned mode = va_arg(ap, unsigned);
    va_end(ap);
    return open_as("open64", path, flags, mode);
}

/* The host's certificate table: one VCEK entry, the all-zero terminator, the VCEK. */
static size_t certificate_table(uint8_t *out, size_t cap) {
    static uint8_t vcek[8192];
    size_t vcek_len = read_file("STAND_IN_VCEK", vcek, sizeof vcek);
    size_t header = 2 * 24;
    if (!vcek_len || header + vcek_len > cap)
        return 0;
    memset(out, 0, header);
    memcpy(out, VCEK_GUID, 16);
    uint32_t offset = (uint32_t)header, length = (uint32_t)vcek_len;
    memcpy(out + 16, &offset, 4);
    memcpy(out + 20, &length, 4);
    memcpy(out + header, vcek, vcek_len);
    return header + vcek_len;
}

static int ext_report(struct snp_guest_request_ioctl *g) {
    struct snp_ext_report_req *req = (void *)(uintptr_t)g->req_data;
    struct snp_report_resp *resp = (void *)(uintptr_t)g->resp_data;
    char user_data[129];
    int rsvd_zero = 1;
    for (int i = 0; i < 64; i++)
        snprintf(user_data + 2 * i, 3, "%02x", req->data.user_data[i]);
    for (size_t i = 0; i < sizeof req->data.rsvd; i++)
        rsvd_zero &= req->data.rsvd[i] == 0;
    logf_("SNP_GET_EXT_REPORT msg_version=%u vmpl=%u rsvd_zero=%d user_data=%s certs_len=%u "
          "certs_address_set=%d",
          g->msg_version, req->data.vmpl, rsvd_zero, user_data, req->certs_len,
          req->certs_address != 0 && req->certs_address != UINT64_MAX);
    if (!g->msg_version || !g->req_data || !g->resp_data) {
        errno = EINVAL;
        return -1;
    }
    static uint8_t table[3 * PAGE];
    size_t table_len = certificate_table(table, sizeof table);
    uint32_t needed = (uint32_t)((table_len + PAGE - 1) / PAGE * PAGE);
    if (req->certs_len < needed) {
        req->certs_len = needed;
        /* SNP_GUEST_VMM_ERR() itself casts to the kernel-only u64. */
        g->exitinfo2 = (__u64)SNP_GUEST_VMM_ERR_INVALID_LEN << SNP_GUEST_VMM_ERR_SHIFT;
        logf_("answer INVALID_LEN certs_len=%u", needed);
        errno = EIO;
        return -1;
    }
    if (req->certs_len % PAGE) {
        errno = EINVAL;
        return -1;
    }
    memset((void *)(uintptr_t)req->certs_address, 0, req->certs_len);
    memcpy((void *)(uintptr_t)req->certs_address, table, table_len);

    uint8_t report[1184];
    size_t report_len = read_file("STAND_IN_REPORT", report, sizeof report);
    if (report_len != sizeof report) {
        errno = EIO;
        return -1;
    }
    uint32_t status = 0, size = (uint32_t)report_len;
    memset(resp->data, 0, sizeof resp->data);
    memcpy(resp->data, &status, 4);
    memcpy(resp->data + 4, &size, 4);
    memcpy(resp->data + 32, report, report_len);
    logf_("answer report=%zu table=%zu", report_len, table_len);
    return 0;
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fd < 0 || fd != fake_fd) {
        int (*real)(int, unsigned long, ...) = dlsym(RTLD_NEXT, "ioctl");
        return real(fd, request, arg);
    }
    if (request != SNP_GET_EXT_REPORT) {
        logf_("unexpected ioctl request %#lx (SNP_GET_EXT_REPORT is %#lx)", request,
              (unsigned long)SNP_GET_EXT_REPORT);
        errno = ENOTTY;
        return -1;
    }
    return ext_report(arg);
}
