#ifndef TOKENWATCH_CRDKAFKA_SHIM_H
#define TOKENWATCH_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>

/* rd_kafka_producev is variadic and rd_kafka_vu_t holds an anonymous union: both are awkward from Swift, so one
 * produce call is assembled here. Key, value and headers are copied/owned by librdkafka on success; on failure the
 * caller still owns `headers` and must destroy them. Returns RD_KAFKA_RESP_ERR_NO_ERROR or the error code. */
static inline rd_kafka_resp_err_t tw_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                             const void *key, size_t key_len, const void *value, size_t value_len,
                                             rd_kafka_headers_t *headers, void *opaque) {
    rd_kafka_vu_t vus[7];
    size_t n = 0;
    vus[n].vtype = RD_KAFKA_VTYPE_RKT; vus[n].u.rkt = rkt; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_PARTITION; vus[n].u.i32 = partition; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS; vus[n].u.i = RD_KAFKA_MSG_F_COPY; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_VALUE; vus[n].u.mem.ptr = (void *)value; vus[n].u.mem.size = value_len; n++;
    if (key) { vus[n].vtype = RD_KAFKA_VTYPE_KEY; vus[n].u.mem.ptr = (void *)key; vus[n].u.mem.size = key_len; n++; }
    if (headers) { vus[n].vtype = RD_KAFKA_VTYPE_HEADERS; vus[n].u.headers = headers; n++; }
    vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE; vus[n].u.ptr = opaque; n++;
    rd_kafka_error_t *error = rd_kafka_produceva(rk, vus, n);
    if (!error) return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    return code;
}

/* Copies out the code and string of an rd_kafka_error_t and frees it; Swift then needs no ownership rules for it. */
static inline rd_kafka_resp_err_t tw_error_take(rd_kafka_error_t *error, char *buf, size_t buf_len, int *retriable) {
    if (!error) return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    if (buf && buf_len) {
        const char *s = rd_kafka_error_string(error);
        size_t i = 0;
        for (; s && s[i] && i + 1 < buf_len; i++) buf[i] = s[i];
        buf[i] = '\0';
    }
    if (retriable) *retriable = rd_kafka_error_is_retriable(error);
    rd_kafka_error_destroy(error);
    return code;
}
#endif
