/* The C library's stub resolver as a pod uses it: built with gcc it is glibc's, built with
 * musl-gcc it is musl's (Alpine images). Nothing here resolves anything itself.
 *
 *   lookup host NAME          getaddrinfo(NAME, AF_UNSPEC): the addresses, sorted, one per line
 *   lookup host4 NAME         the same with AF_INET
 *   lookup addr IP            getnameinfo(NI_NAMEREQD): the name
 *   lookup loop MS NAME...    getaddrinfo(AF_UNSPEC) of each NAME in turn, MS ms apart, until
 *                             killed; one line per lookup:
 *                             START_MS LATENCY_MS NAME ADDR,ADDR,...|ERR:CODE
 *
 * A failed lookup prints "ERR CODE" (NONAME, AGAIN, FAIL, NODATA, SYSTEM, OTHER) and exits 2.
 * host, host4 and addr print the lookup's own duration on stderr: "lookup-ms MS".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const char *code(int rc)
{
    switch (rc) {
    case EAI_NONAME: return "NONAME";
    case EAI_AGAIN: return "AGAIN";
    case EAI_FAIL: return "FAIL";
#ifdef EAI_NODATA
    case EAI_NODATA: return "NODATA";
#endif
    case EAI_SYSTEM: return "SYSTEM";
    default: return "OTHER";
    }
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Resolves NAME; writes the sorted, de-duplicated addresses joined by SEP into OUT. */
static int resolve(const char *name, int family, char *out, size_t outlen, char sep)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0)
        return rc;
    char *addrs[512];
    size_t n = 0;
    for (ai = res; ai && n < 512; ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        const void *p = ai->ai_family == AF_INET6
            ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
            : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        inet_ntop(ai->ai_family, p, buf, sizeof buf);
        addrs[n++] = strdup(buf);
    }
    freeaddrinfo(res);
    qsort(addrs, n, sizeof addrs[0], cmp);
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(addrs[i], addrs[i - 1]) != 0) {
            int w = snprintf(out + used, outlen - used, "%s%s", used ? (char[]){sep, 0} : "", addrs[i]);
            if (w > 0 && (size_t)w < outlen - used)
                used += (size_t)w;
        }
        free(addrs[i]);
    }
    return 0;
}

static double now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    static char out[65536];
    double t0 = now_ms(CLOCK_MONOTONIC);
    if (argc == 3 && (strcmp(argv[1], "host") == 0 || strcmp(argv[1], "host4") == 0)) {
        int rc = resolve(argv[2], argv[1][4] == '4' ? AF_INET : AF_UNSPEC, out, sizeof out, '\n');
        fprintf(stderr, "lookup-ms %.3f\n", now_ms(CLOCK_MONOTONIC) - t0);
        if (rc != 0) {
            printf("ERR %s\n", code(rc));
            return 2;
        }
        printf("%s\n", out);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "addr") == 0) {
        struct sockaddr_storage ss;
        socklen_t len;
        memset(&ss, 0, sizeof ss);
        if (inet_pton(AF_INET, argv[2], &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
            ss.ss_family = AF_INET;
            len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, argv[2], &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
            ss.ss_family = AF_INET6;
            len = sizeof(struct sockaddr_in6);
        } else {
            fprintf(stderr, "not an address: %s\n", argv[2]);
            return 1;
        }
        char host[NI_MAXHOST];
        int rc = getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, NULL, 0, NI_NAMEREQD);
        fprintf(stderr, "lookup-ms %.3f\n", now_ms(CLOCK_MONOTONIC) - t0);
        if (rc != 0) {
            printf("ERR %s\n", code(rc));
            return 2;
        }
        printf("%s\n", host);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "loop") == 0) {
        long ms = atol(argv[2]);
        struct timespec gap = {ms / 1000, (ms % 1000) * 1000000L};
        for (unsigned long i = 0;; i++) {
            const char *name = argv[3 + i % (unsigned long)(argc - 3)];
            double wall = now_ms(CLOCK_REALTIME), t0 = now_ms(CLOCK_MONOTONIC);
            int rc = resolve(name, AF_UNSPEC, out, sizeof out, ',');
            double lat = now_ms(CLOCK_MONOTONIC) - t0;
            if (rc != 0)
                printf("%.0f %.3f %s ERR:%s\n", wall, lat, name, code(rc));
            else
                printf("%.0f %.3f %s %s\n", wall, lat, name, out);
            fflush(stdout);
            nanosleep(&gap, NULL);
        }
    }
    fprintf(stderr, "usage: lookup host|host4 NAME | addr IP | loop MS NAME...\n");
    return 1;
}
