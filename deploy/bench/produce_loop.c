/*
 * The baseline for `make bench`: N keyed messages of S bytes produced by a plain C loop over librdkafka with the
 * same settings as Tokenwatch's Swift producer (idempotent, acks=all, lz4, linger 5 ms), timed until every
 * delivery report is in. Prints "<delivered> <seconds> <msgs/s>".
 * Usage: produce_loop BROKERS TOPIC COUNT SIZE
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long delivered = 0, failed = 0;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    if (m->err) failed++; else delivered++;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s BROKERS TOPIC COUNT SIZE\n", argv[0]); return 2; }
    long count = atol(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[][2] = {{"bootstrap.servers", argv[1]}, {"enable.idempotence", "true"}, {"acks", "all"},
                              {"compression.codec", "lz4"}, {"linger.ms", "5"}, {"partitioner", "murmur2_random"},
                              {"queue.buffering.max.messages", "500000"}};
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) { fprintf(stderr, "%s\n", err); return 1; }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "%s\n", err); return 1; }
    char *value = malloc(size);
    memset(value, 'x', size);
    char key[32];
    double start = now();
    for (long i = 0; i < count; i++) {
        int klen = snprintf(key, sizeof key, "tenant-%ld", i % 64);
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(key, (size_t)klen),
                                                      RD_KAFKA_V_VALUE(value, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) { rd_kafka_poll(rk, 1); continue; }
            if (e) { fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e)); return 1; }
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    double seconds = now() - start;
    printf("%ld %.3f %.0f\n", delivered, seconds, delivered / seconds);
    rd_kafka_destroy(rk);
    free(value);
    return failed ? 1 : 0;
}
