/* fresh_ids: a proxied request's new request, trace and span IDs, drawn and formatted in one native call.
 *
 * Why by hand: correlation_ids.py draws the IDs of 128 requests with one os.urandom call, hex-formats
 * the draw whole and hands each request four slices of it. Even so that cost about 2,000 instructions
 * per request, a seventeenth of a proxied one: the hex formatting of the draw, the strided column
 * writes over it and the four slices. Here the random bytes come from getrandom(2) into a pool for
 * 128 requests, and each request's 40 bytes are formatted straight into the four objects it needs.
 * The standard library has no call that does this (uuid.uuid4 and secrets.token_hex each make one
 * ID, with more work per call than the slices they would replace).
 *
 * The same IDs as correlation_ids._python_fresh_fields makes (which runs where this is not built):
 *   - the request ID, a version 4 UUID in its canonical 36-character form (the version digit 4, the
 *     variant digit 8, 9, a or b), as str and as bytes;
 *   - the trace ID, 32 lower-case hex digits, as str; the trace ID, a dash and a span ID of 16 hex
 *     digits, as bytes (what the traceparent field carries between its version and its flags).
 * W3C Trace Context forbids an all-zero trace or span ID: a record with either is skipped (about once
 * in 2^64 requests). The random bytes come from the kernel's CSPRNG, as os.urandom's do, so nobody can
 * guess another request's ID. A forked child empties its copy of the pool (pthread_atfork): parent and
 * child must not hand out the same IDs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define UUID_BYTES 16
#define TRACE_BYTES 16
#define SPAN_BYTES 8
#define RECORD (UUID_BYTES + TRACE_BYTES + SPAN_BYTES)
#define RECORDS_PER_DRAW 128
#define POOL (RECORD * RECORDS_PER_DRAW)
#define REQUEST_ID_CHARS 36
#define TRACE_ID_CHARS (2 * TRACE_BYTES)
#define TRACE_SPAN_CHARS (TRACE_ID_CHARS + 1 + 2 * SPAN_BYTES)

static unsigned char pool[POOL];
static size_t pool_at = POOL; /* POOL: the pool is spent, draw again */
static const char HEX[] = "0123456789abcdef";
static char HEX_PAIRS[512]; /* byte -> its two hex digits: one table read per byte (module init) */

static void forget_pool(void) { pool_at = POOL; }

/* Fill the pool from the kernel; -1 with an exception set when it cannot.
 *
 * The bytes land in a buffer of this call's own and are copied into the pool once whole: a signal
 * handler that PyErr_CheckSignals runs on EINTR may itself take IDs (and draw), and must not find a
 * half-filled pool, nor have the records it took handed out again when this call resets pool_at. */
static int draw(void)
{
    unsigned char fresh[POOL];
    size_t got = 0;
    while (got < POOL) {
        ssize_t n = getrandom(fresh + got, POOL - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    return -1;
                }
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        got += (size_t)n;
    }
    memcpy(pool, fresh, POOL);
    pool_at = 0;
    return 0;
}

static int all_zero(const unsigned char *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (bytes[i]) {
            return 0;
        }
    }
    return 1;
}

static char *hex(char *out, const unsigned char *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        memcpy(out, HEX_PAIRS + 2 * bytes[i], 2);
        out += 2;
    }
    return out;
}

static PyObject *ascii_str(const char *text, Py_ssize_t size)
{
    PyObject *str = PyUnicode_New(size, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), text, (size_t)size);
    }
    return str;
}

static PyObject *fresh_fields(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    const unsigned char *record;
    for (;;) {
        if (pool_at >= POOL && draw() < 0) {
            return NULL;
        }
        record = pool + pool_at;
        pool_at += RECORD;
        if (!all_zero(record + UUID_BYTES, TRACE_BYTES) &&
            !all_zero(record + UUID_BYTES + TRACE_BYTES, SPAN_BYTES)) {
            break;
        }
    }
    unsigned char uuid[UUID_BYTES];
    memcpy(uuid, record, UUID_BYTES);
    uuid[6] = (unsigned char)(0x40 | (uuid[6] & 0x0f)); /* version 4 */
    uuid[8] = (unsigned char)(0x80 | (uuid[8] & 0x3f)); /* variant 10xx: 8, 9, a or b */
    char request_id[REQUEST_ID_CHARS];
    char *out = hex(request_id, uuid, 4);
    *out++ = '-';
    out = hex(out, uuid + 4, 2);
    *out++ = '-';
    out = hex(out, uuid + 6, 2);
    *out++ = '-';
    out = hex(out, uuid + 8, 2);
    *out++ = '-';
    hex(out, uuid + 10, 6);
    char trace_span[TRACE_SPAN_CHARS];
    out = hex(trace_span, record + UUID_BYTES, TRACE_BYTES);
    *out++ = '-';
    hex(out, record + UUID_BYTES + TRACE_BYTES, SPAN_BYTES);

    PyObject *fields = PyTuple_New(4);
    if (fields == NULL) {
        return NULL;
    }
    PyObject *items[4] = {
        ascii_str(request_id, REQUEST_ID_CHARS),
        ascii_str(trace_span, TRACE_ID_CHARS),
        PyBytes_FromStringAndSize(request_id, REQUEST_ID_CHARS),
        PyBytes_FromStringAndSize(trace_span, TRACE_SPAN_CHARS),
    };
    for (int i = 0; i < 4; i++) {
        if (items[i] == NULL) {
            for (int j = i + 1; j < 4; j++) {
                Py_XDECREF(items[j]);
            }
            Py_DECREF(fields);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, i, items[i]);
    }
    return fields;
}

static PyMethodDef methods[] = {
    {"fresh_fields", fresh_fields, METH_NOARGS,
     "fresh_fields() -> (request ID, trace ID, request ID as bytes, b'<trace ID>-<span ID>')\n\n"
     "A new v4 UUID request ID and a new trace and span ID (never all zeros), from the kernel's CSPRNG."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fresh_ids", "New request, trace and span IDs for one proxied request.", -1,
    methods,
};

PyMODINIT_FUNC PyInit_fresh_ids(void)
{
    for (int byte = 0; byte < 256; byte++) {
        HEX_PAIRS[2 * byte] = HEX[byte >> 4];
        HEX_PAIRS[2 * byte + 1] = HEX[byte & 15];
    }
    /* Where getrandom(2) is missing (ENOSYS: a kernel before 3.17) or refused (EPERM: a seccomp
     * profile that blocks it), every draw would fail and every proxied request with it: refuse to
     * load instead, so correlation_ids uses its Python maker, whose os.urandom falls back to
     * /dev/urandom in exactly these cases. EAGAIN (the kernel's pool not yet initialised, early at
     * boot) is no reason: a draw waits for it, as os.urandom does. ImportError for every refusal,
     * since that is what correlation_ids catches. */
    unsigned char probe;
    if (getrandom(&probe, 1, GRND_NONBLOCK) < 0 && (errno == ENOSYS || errno == EPERM)) {
        PyErr_Format(PyExc_ImportError, "fresh_ids: getrandom(2) unavailable (%s)", strerror(errno));
        return NULL;
    }
    if (pthread_atfork(NULL, NULL, forget_pool) != 0) {
        PyErr_SetString(PyExc_ImportError, "fresh_ids: pthread_atfork failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
