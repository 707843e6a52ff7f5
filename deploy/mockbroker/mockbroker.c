/*
 * tokenwatch-mockbroker: a Kafka-protocol broker for local runs and tests.
 *
 * No genuine Apache Kafka can be installed on the machines this project is built on, so the local stack runs
 * librdkafka's own mock cluster (rdkafka_mock.h), which speaks the Kafka protocol over TCP on loopback. Everything
 * else treats it as a real broker at a bootstrap address. It keeps data in memory only.
 *
 * The mock does not implement the CreateTopics admin API, so this program creates the topics it is given at start
 * and offers a line-based control port on 127.0.0.1 for tests:
 *     PING                      -> OK
 *     CREATE <topic> <parts>    -> OK | ERR <reason>     (create a topic with that many partitions)
 *     DOWN <broker-id>          -> OK | ERR <reason>     (fault injection: the broker stops answering)
 *     UP <broker-id>            -> OK | ERR <reason>
 *     RTT <broker-id> <ms>      -> OK | ERR <reason>     (added round-trip time)
 *
 * Usage: tokenwatch-mockbroker --bootstrap-file F --control-file F [--brokers N] [--topic name:partitions]...
 * The bootstrap address ("127.0.0.1:port,...") and the control address ("127.0.0.1:port") are written to the
 * files once the cluster is up (written to a temporary name, then renamed, so readers never see half a file).
 * SIGTERM or SIGINT stops it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 32
#define LINE_MAX_LEN 512

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static int write_file_atomically(const char *path, const char *content) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%s\n", content);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *spec, char *reason, size_t reason_len) {
    char name[256];
    int parts = 0;
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof name) {
        snprintf(reason, reason_len, "topic spec must be name:partitions, got '%s'", spec);
        return -1;
    }
    memcpy(name, spec, (size_t)(colon - spec));
    name[colon - spec] = '\0';
    parts = atoi(colon + 1);
    if (parts < 1 || parts > 1000) {
        snprintf(reason, reason_len, "partitions must be 1...1000, got '%s'", colon + 1);
        return -1;
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, parts, 1);
    if (err) {
        snprintf(reason, reason_len, "%s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Handles one control line; writes the reply (without newline) into out. */
static void handle_line(rd_kafka_mock_cluster_t *mc, char *line, char *out, size_t out_len) {
    char reason[256] = "";
    char *cmd = strtok(line, " \t\r");
    char *a1 = strtok(NULL, " \t\r");
    char *a2 = strtok(NULL, " \t\r");
    char *a3 = strtok(NULL, " \t\r");
    if (!cmd) { snprintf(out, out_len, "ERR empty command"); return; }
    if (strcmp(cmd, "PING") == 0) { snprintf(out, out_len, "OK"); return; }
    if (strcmp(cmd, "CREATE") == 0 && a1 && a2) {
        char spec[300];
        snprintf(spec, sizeof spec, "%s:%s", a1, a2);
        if (create_topic(mc, spec, reason, sizeof reason) == 0) snprintf(out, out_len, "OK");
        else snprintf(out, out_len, "ERR %s", reason);
        return;
    }
    if ((strcmp(cmd, "DOWN") == 0 || strcmp(cmd, "UP") == 0) && a1) {
        int id = atoi(a1);
        rd_kafka_resp_err_t err = strcmp(cmd, "DOWN") == 0 ? rd_kafka_mock_broker_set_down(mc, id)
                                                            : rd_kafka_mock_broker_set_up(mc, id);
        if (err) snprintf(out, out_len, "ERR %s", rd_kafka_err2str(err));
        else snprintf(out, out_len, "OK");
        return;
    }
    if (strcmp(cmd, "RTT") == 0 && a1 && a2) {
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(mc, atoi(a1), atoi(a2));
        if (err) snprintf(out, out_len, "ERR %s", rd_kafka_err2str(err));
        else snprintf(out, out_len, "OK");
        return;
    }
    /* ERRORS <api key> <count> <error code>: the next <count> requests of that kind are answered with the error. */
    if (strcmp(cmd, "ERRORS") == 0 && a1 && a2 && a3) {
        int key = atoi(a1), count = atoi(a2), code = atoi(a3);
        if (key < 0 || key > 100 || count < 1 || count > 100000) { snprintf(out, out_len, "ERR api key 0...100, count 1...100000"); return; }
        rd_kafka_resp_err_t *errors = calloc((size_t)count, sizeof *errors);
        if (!errors) { snprintf(out, out_len, "ERR out of memory"); return; }
        for (int i = 0; i < count; i++) errors[i] = (rd_kafka_resp_err_t)code;
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)key, (size_t)count, errors);
        free(errors);
        snprintf(out, out_len, "OK");
        return;
    }
    snprintf(out, out_len, "ERR unknown command or missing arguments");
}

int main(int argc, char **argv) {
    const char *bootstrap_file = NULL, *control_file = NULL;
    int brokers = 1;
    const char *topics[256];
    int ntopics = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) bootstrap_file = argv[++i];
        else if (strcmp(argv[i], "--control-file") == 0 && i + 1 < argc) control_file = argv[++i];
        else if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) brokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < 256) topics[ntopics++] = argv[++i];
        else { fprintf(stderr, "mockbroker: unknown or incomplete argument '%s'\n", argv[i]); return 2; }
    }
    if (!bootstrap_file || !control_file || brokers < 1 || brokers > 9) {
        fprintf(stderr, "usage: %s --bootstrap-file F --control-file F [--brokers 1..9] [--topic name:partitions]...\n", argv[0]);
        return 2;
    }

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the mock cluster's threads; it never connects anywhere. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) { fprintf(stderr, "mockbroker: rd_kafka_new: %s\n", errstr); return 1; } /* conf freed by rd_kafka_new only on success */
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) { fprintf(stderr, "mockbroker: could not create the mock cluster\n"); return 1; }

    for (int i = 0; i < ntopics; i++) {
        char reason[256];
        if (create_topic(mc, topics[i], reason, sizeof reason) != 0) {
            fprintf(stderr, "mockbroker: --topic %s: %s\n", topics[i], reason);
            return 2;
        }
    }

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        perror("mockbroker: control socket");
        return 1;
    }
    char control[64];
    snprintf(control, sizeof control, "127.0.0.1:%d", ntohs(addr.sin_port));

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (write_file_atomically(control_file, control) != 0 || write_file_atomically(bootstrap_file, bootstraps) != 0) {
        perror("mockbroker: writing address files");
        return 1;
    }
    fprintf(stderr, "mockbroker: %d broker(s) at %s, %d topic(s), control at %s\n", brokers, bootstraps, ntopics, control);

    struct pollfd fds[MAX_CLIENTS + 1];
    char bufs[MAX_CLIENTS + 1][LINE_MAX_LEN];
    size_t lens[MAX_CLIENTS + 1];
    int nfds = 1;
    fds[0].fd = lfd;
    fds[0].events = POLLIN;
    while (!stopping) {
        int n = poll(fds, (nfds_t)nfds, 200);
        if (n < 0) { if (errno == EINTR) continue; perror("poll"); break; }
        if (fds[0].revents & POLLIN) {
            int cfd = accept(lfd, NULL, NULL);
            if (cfd >= 0 && nfds <= MAX_CLIENTS) {
                fds[nfds].fd = cfd; fds[nfds].events = POLLIN; lens[nfds] = 0; nfds++;
            } else if (cfd >= 0) close(cfd);
        }
        for (int i = 1; i < nfds; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(fds[i].fd, bufs[i] + lens[i], LINE_MAX_LEN - 1 - lens[i]);
            int drop = r <= 0;
            if (r > 0) {
                lens[i] += (size_t)r;
                char *nl;
                while ((nl = memchr(bufs[i], '\n', lens[i])) != NULL) {
                    *nl = '\0';
                    char reply[LINE_MAX_LEN];
                    handle_line(mc, bufs[i], reply, sizeof reply);
                    strncat(reply, "\n", sizeof reply - strlen(reply) - 1);
                    if (write(fds[i].fd, reply, strlen(reply)) < 0) drop = 1;
                    size_t used = (size_t)(nl - bufs[i]) + 1;
                    memmove(bufs[i], nl + 1, lens[i] - used);
                    lens[i] -= used;
                }
                if (lens[i] >= LINE_MAX_LEN - 1) drop = 1; /* an over-long line: refuse rather than buffer it */
            }
            if (drop) { close(fds[i].fd); fds[i] = fds[nfds - 1]; lens[i] = lens[nfds - 1]; memcpy(bufs[i], bufs[nfds - 1], lens[i]); nfds--; i--; }
        }
    }
    fprintf(stderr, "mockbroker: stopping\n");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    unlink(bootstrap_file);
    unlink(control_file);
    return 0;
}
