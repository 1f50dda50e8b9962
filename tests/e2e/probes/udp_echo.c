/* A UDP echo server for the published-port tests: busybox has no UDP listener. Binds
 * 0.0.0.0:PORT (argv[1]) and sends every datagram back to its sender, appending it to the file
 * argv[2] as well, so the test can check both directions. Static, for a busybox rootfs. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: udp_echo PORT FILE\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp_echo: bind");
        return 1;
    }
    for (;;) {
        char buf[2048];
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            continue;
        }
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            (void)!write(fd, buf, (size_t)n);
            close(fd);
        }
        sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}
