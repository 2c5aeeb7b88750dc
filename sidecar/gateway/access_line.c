/* access_line: a proxied request's access entry, written in one native call.
 *
 * Why by hand: access_log.AccessLineEncoder builds the usual line (a proxied request, both times
 * measured) as one literal bytes format of 31 pieces. Compiled, that is mypyc's generic builder: for
 * every piece, literal or not, a size sum and a memcpy through the C library, about 1,500
 * instructions per request under callgrind, a twentieth of the gateway's cost per proxied request;
 * the encoder's decimal lookups and the trace ID's encode added about 300 more. Here the literal
 * parts are copies the compiler knows the size of, the numbers are formatted in place and the trace
* ID's characters are copied from the str. Neither the standard library nor orjson formats a line of
 * pre-escaped fragments (orjson would escape them again, and needs a dict built first).
 *
 * What it makes is the entry the correlation index holds: the request's time as 8 bytes of a native
 * double (struct.pack("d", at)) in front of the line. The index keeps that object as it is, and the
 * access log's writer copies the lines out of its entries at each flush (lines_of): the struct.pack
 * call and the concatenation that packed each line cost another 570 instructions per request.
 *
 * The same bytes as access_log._python_proxied_line makes (which runs where this is not built; a test
 * compares the two on many lines):
 *   <at: 8 bytes>{"time":"<time>","request_id":"<id>","trace_id":"<trace>","method":<method>,"route":<route>,
 *   "path":<path>,"status":<status>,"duration_ms":<ms>.<3 digits>,"upstream_ms":<ms>.<3 digits>,
 *   "bytes_in":<n>,"bytes_out":<n>,"client":<client>,"user_agent":<agent><error>}\n
 * where the bytes arguments are already JSON (or the inside of a JSON string, for the time and the
 * request ID), the trace ID is ASCII, and both times come in whole microseconds (never negative).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define ARGS 15
#define AT_SIZE 8 /* the time in front of the line: a double, as struct.pack("d") writes it */
#define DECIMAL_CHARS 24 /* a long long in decimal, with its sign */

/* Copy a string literal: its size is known here, so the compiler writes it in a few moves. */
#define PUT_LITERAL(out, text)                      \
    do {                                            \
        memcpy((out), (text), sizeof(text) - 1);    \
        (out) += sizeof(text) - 1;                  \
    } while (0)

static const char TIME[] = "{\"time\":\"";
static const char REQUEST_ID[] = "\",\"request_id\":\"";
static const char TRACE_ID[] = "\",\"trace_id\":\"";
static const char METHOD[] = "\",\"method\":";
static const char ROUTE[] = ",\"route\":";
static const char PATH[] = ",\"path\":";
static const char STATUS[] = ",\"status\":";
static const char DURATION[] = ",\"duration_ms\":";
static const char UPSTREAM[] = ",\"upstream_ms\":";
static const char BYTES_IN[] = ",\"bytes_in\":";
static const char BYTES_OUT[] = ",\"bytes_out\":";
static const char CLIENT[] = ",\"client\":";
static const char USER_AGENT[] = ",\"user_agent\":";
static const char END[] = "}\n";

#define LITERALS                                                                               \
    (sizeof(TIME) + sizeof(REQUEST_ID) + sizeof(TRACE_ID) + sizeof(METHOD) + sizeof(ROUTE) +  \
     sizeof(PATH) + sizeof(STATUS) + sizeof(DURATION) + sizeof(UPSTREAM) + sizeof(BYTES_IN) + \
     sizeof(BYTES_OUT) + sizeof(CLIENT) + sizeof(USER_AGENT) + sizeof(END) - 14)

/* ``value`` in decimal, as b"%d" writes it, at the end of ``buffer``; returns where it starts. */
static char *decimal(char *end, long long value)
{
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    char *at = end;
    do {
        *--at = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) {
        *--at = '-';
    }
    return at;
}

/* A time in whole microseconds as milliseconds with three decimals: "<ms>.<3 digits>". */
static char *milliseconds(char *end, long long micros)
{
    char *at = end;
    long long fraction = micros % 1000;
    *--at = (char)('0' + fraction % 10);
    *--at = (char)('0' + fraction / 10 % 10);
    *--at = (char)('0' + fraction / 100);
    *--at = '.';
    return decimal(at, micros / 1000);
}

static int bytes_args(PyObject *const *args, const int *which, int count)
{
    for (int i = 0; i < count; i++) {
        if (!PyBytes_Check(args[which[i]])) {
            PyErr_Format(PyExc_TypeError, "proxied_line: argument %d must be bytes, not %.100s",
                         which[i] + 2, Py_TYPE(args[which[i]])->tp_name);
            return -1;
        }
    }
    return 0;
}

static int number(PyObject *arg, int position, int non_negative, long long *value)
{
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "proxied_line: argument %d must be int, not %.100s", position,
                     Py_TYPE(arg)->tp_name);
        return -1;
    }
    *value = PyLong_AsLongLong(arg);
    if (*value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (non_negative && *value < 0) {
        PyErr_Format(PyExc_ValueError, "proxied_line: argument %d must not be negative", position);
        return -1;
    }
    return 0;
}

/* ``size`` grown by ``piece``; -1 with OverflowError when the sum would not fit a Py_ssize_t. */
static int grow(Py_ssize_t *size, Py_ssize_t piece, const char *what)
{
    if (piece > PY_SSIZE_T_MAX - *size) {
        PyErr_Format(PyExc_OverflowError, "%s: the line is too long", what);
        return -1;
    }
    *size += piece;
    return 0;
}

static inline char *put(char *out, PyObject *bytes)
{
    Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    memcpy(out, PyBytes_AS_STRING(bytes), (size_t)size);
    return out + size;
}

static PyObject *proxied_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != ARGS) {
        PyErr_Format(PyExc_TypeError, "proxied_line expected %d arguments, got %zd", ARGS, nargs);
        return NULL;
    }
    if (!PyFloat_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "proxied_line: the time must be a float, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    double at = PyFloat_AS_DOUBLE(args[0]);
    args++; /* the line's own arguments, numbered from 0 below */
    static const int BYTES[] = {0, 1, 3, 4, 5, 11, 12, 13};
    if (bytes_args(args, BYTES, (int)(sizeof(BYTES) / sizeof(BYTES[0]))) < 0) {
        return NULL;
    }
    PyObject *trace_id = args[2];
    if (!PyUnicode_Check(trace_id) || !PyUnicode_IS_COMPACT_ASCII(trace_id)) {
        PyErr_SetString(PyExc_TypeError, "proxied_line: the trace ID must be an ASCII str");
        return NULL;
    }
    long long status, total, waited, bytes_in, bytes_out;
    if (number(args[6], 8, 0, &status) < 0 || number(args[7], 9, 1, &total) < 0 ||
        number(args[8], 10, 1, &waited) < 0 || number(args[9], 11, 0, &bytes_in) < 0 ||
        number(args[10], 12, 0, &bytes_out) < 0) {
        return NULL;
    }
    char status_buffer[DECIMAL_CHARS], total_buffer[DECIMAL_CHARS], waited_buffer[DECIMAL_CHARS];
    char in_buffer[DECIMAL_CHARS], out_buffer[DECIMAL_CHARS];
    char *status_end = status_buffer + DECIMAL_CHARS, *total_end = total_buffer + DECIMAL_CHARS;
    char *waited_end = waited_buffer + DECIMAL_CHARS, *in_end = in_buffer + DECIMAL_CHARS;
    char *out_end = out_buffer + DECIMAL_CHARS;
    char *status_text = decimal(status_end, status);
    char *total_text = milliseconds(total_end, total);
    char *waited_text = milliseconds(waited_end, waited);
    char *in_text = decimal(in_end, bytes_in);
    char *out_text = decimal(out_end, bytes_out);
    Py_ssize_t trace_size = PyUnicode_GET_LENGTH(trace_id);

    Py_ssize_t size = (Py_ssize_t)AT_SIZE + (Py_ssize_t)LITERALS + trace_size + (status_end - status_text) +
                      (total_end - total_text) + (waited_end - waited_text) + (in_end - in_text) +
                      (out_end - out_text);
    for (size_t i = 0; i < sizeof(BYTES) / sizeof(BYTES[0]); i++) {
        if (grow(&size, PyBytes_GET_SIZE(args[BYTES[i]]), "proxied_line") < 0) {
            return NULL;
        }
    }
    PyObject *line = PyBytes_FromStringAndSize(NULL, size);
    if (line == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(line);
    memcpy(out, &at, AT_SIZE);
    out += AT_SIZE;
    PUT_LITERAL(out, TIME);
    out = put(out, args[0]);
    PUT_LITERAL(out, REQUEST_ID);
    out = put(out, args[1]);
    PUT_LITERAL(out, TRACE_ID);
    memcpy(out, PyUnicode_1BYTE_DATA(trace_id), (size_t)trace_size);
    out += trace_size;
    PUT_LITERAL(out, METHOD);
    out = put(out, args[3]);
    PUT_LITERAL(out, ROUTE);
    out = put(out, args[4]);
    PUT_LITERAL(out, PATH);
    out = put(out, args[5]);
    PUT_LITERAL(out, STATUS);
    memcpy(out, status_text, (size_t)(status_end - status_text));
    out += status_end - status_text;
    PUT_LITERAL(out, DURATION);
    memcpy(out, total_text, (size_t)(total_end - total_text));
    out += total_end - total_text;
    PUT_LITERAL(out, UPSTREAM);
    memcpy(out, waited_text, (size_t)(waited_end - waited_text));
    out += waited_end - waited_text;
    PUT_LITERAL(out, BYTES_IN);
    memcpy(out, in_text, (size_t)(in_end - in_text));
    out += in_end - in_text;
    PUT_LITERAL(out, BYTES_OUT);
    memcpy(out, out_text, (size_t)(out_end - out_text));
    out += out_end - out_text;
    PUT_LITERAL(out, CLIENT);
    out = put(out, args[11]);
    PUT_LITERAL(out, USER_AGENT);
    out = put(out, args[12]);
    out = put(out, args[13]);
    PUT_LITERAL(out, END);
    if (out != PyBytes_AS_STRING(line) + size) { /* cannot happen: the sizes above are the copies */
        Py_DECREF(line);
        PyErr_SetString(PyExc_SystemError, "proxied_line: size mismatch");
        return NULL;
    }
    return line;
}

/* The lines of a list of access entries, joined: each entry without its time (the writer's flush). */
static PyObject *lines_of(PyObject *module, PyObject *entries)
{
    (void)module;
    if (!PyList_Check(entries)) {
        PyErr_Format(PyExc_TypeError, "lines_of: expected a list, not %.100s", Py_TYPE(entries)->tp_name);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(entries);
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (!PyBytes_Check(entry) || PyBytes_GET_SIZE(entry) < AT_SIZE) {
            PyErr_Format(PyExc_ValueError, "lines_of: entry %zd is not an access entry", i);
            return NULL;
        }
        if (grow(&size, PyBytes_GET_SIZE(entry) - AT_SIZE, "lines_of") < 0) {
            return NULL;
        }
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(joined);
    /* the list cannot change meanwhile: nothing here runs Python code or releases the GIL */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        Py_ssize_t piece = PyBytes_GET_SIZE(entry) - AT_SIZE;
        memcpy(out, PyBytes_AS_STRING(entry) + AT_SIZE, (size_t)piece);
        out += piece;
    }
    return joined;
}

static PyMethodDef methods[] = {
    {"lines_of", lines_of, METH_O,
     "lines_of(entries: list[bytes]) -> bytes\n\n"
     "The lines of access entries joined, each without the 8-byte time in front of it."},
    {"proxied_line", (PyCFunction)(void (*)(void))proxied_line, METH_FASTCALL,
     "proxied_line(at, time, request_id, trace_id, method, route, path, status, total_us,\n"
     "             waited_us, bytes_in, bytes_out, client, user_agent, error) -> bytes\n\n"
     "A proxied request's access entry: ``at`` packed as a double in front of its JSON line. The bytes\n"
     "arguments are already JSON (time and request ID: the inside of a JSON string), the trace ID an\n"
     "ASCII str, both times whole microseconds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "access_line", "A proxied request's access entry in one call, and the lines of many.", -1, methods,
};

PyMODINIT_FUNC PyInit_access_line(void) { return PyModule_Create(&module); }
