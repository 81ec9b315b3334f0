/* A custom runtime compiled to a native program, as a Rust or Go function's `bootstrap` is:
 * it speaks the Lambda Runtime API over plain sockets and answers each event with
 * {"handler": <_HANDLER>, "event": <the event>}. Built by compat.py with the host's cc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[8 << 20];

/* Sends one request on a new connection and reads the whole answer into buf. */
static size_t call(const char *method, const char *path, const char *body) {
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    char host[64];
    snprintf(host, sizeof host, "%s", api ? api : "127.0.0.1:9001");
    char *colon = strchr(host, ':');
    int port = colon ? atoi(colon + 1) : 80;
    if (colon) *colon = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) exit(2);
    size_t blen = body ? strlen(body) : 0;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, host, blen);
    if (write(fd, head, n) != n) exit(3);
    for (size_t off = 0; off < blen;) {
        ssize_t w = write(fd, body + off, blen - off);
        if (w <= 0) exit(3);
        off += (size_t)w;
    }
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fd);
    return got;
}

int main(void) {
    const char *handler = getenv("_HANDLER");
    static char reply[8 << 20];
    for (;;) {
        call("GET", "/2018-06-01/runtime/invocation/next", NULL);
        char *id = strcasestr(buf, "Lambda-Runtime-Aws-Request-Id:");
        char *event = strstr(buf, "\r\n\r\n");
        if (!id || !event) return 4;
        id += strlen("Lambda-Runtime-Aws-Request-Id:");
        while (*id == ' ') id++;
        char rid[128] = {0};
        for (int i = 0; i < 127 && id[i] != '\r' && id[i] != '\n'; i++) rid[i] = id[i];
        snprintf(reply, sizeof reply, "{\"handler\": \"%s\", \"event\": %s}", handler ? handler : "",
                 event + 4);
        char path[256];
        snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", rid);
        call("POST", path, reply);
    }
}
