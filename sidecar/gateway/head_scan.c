/* head_scan: the app's usual response head, read and restated in one native call.
 *
 * Why by hand: the gateway's per-field work on a response (llhttp's callback for every name and value,
 * a Python call and two bytes objects per field, then one formatted line per kept field) cost about
 * 11,000 instructions per response, a fifth of a proxied request. No maintained library hands back a
 * head in the form the gateway writes it: picohttpparser's bindings still build Python objects per
 * field (and take a bare LF as a line end), llhttp's bindings call back into Python per field.
 *
 * What it accepts is a strict subset of what llhttp accepts, and it decides nothing on its own: a head
 * it does not recognise in full is left to llhttp (it returns None), which then accepts or refuses it
 * as before. Recognised: the whole head in one buffer; ``HTTP/1.0`` or ``HTTP/1.1``, a status from 200
 * to 599 and a reason phrase of visible ASCII, space and tab; field names of token characters; values
 * of visible ASCII with spaces and tabs inside (no obs-text, no trailing whitespace, no folding);
 * CRLF line ends; at most one ``Content-Length`` of 1 to 15 digits, required unless the response has
 * no body (a HEAD request, 204, 304); ``Connection`` tokens ``close`` and ``keep-alive`` only; no
 * ``Transfer-Encoding`` and no ``Upgrade``; at most 64 kept fields. Everything else goes to llhttp.
 *
 * The fields the gateway passes on are copied as ``name: value\r\n`` (the name as the app spelled
 * it) into one bytes object; the hop-by-hop ones (hop_by_hop.py) and the app's ``X-Request-ID`` are
 * left out, as response_head._end_to_end does. tests/unit/gateway/test_head_scan.py holds the two to
 * the same output.
 *
 * ``scan_request`` does the same for a client's request head without a body: ``GET``, ``HEAD``,
 * ``OPTIONS`` or ``DELETE``, an origin-form target of RFC 3986 characters (no fragment), HTTP/1.0 or
 * 1.1, no ``Content-Length``, ``Transfer-Encoding`` or ``Upgrade``. The fields request_head decides on
 * (Host, the IDs, trace context, forwarding, Connection) come back as (name, value) pairs for
 * request_head.build_request_head, which applies the same rules to both paths (framing.decide among
 * them), except a single Host, which comes back as its value (the usual request has no other); the
 * rest are copied as they are. A client controls every byte here: anything outside this
 * subset is llhttp's, which answers it as before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_KEPT 64
#define MAX_LENGTH_DIGITS 15

static unsigned char TOKEN[256];  /* tchar, RFC 9110 section 5.6.2 */
static unsigned char TEXT[256];   /* visible ASCII, space and tab: a value or a reason phrase */
static unsigned char TARGET[256]; /* RFC 3986 unreserved, sub-delims, ":", "@", "/", "?", "%" */
static PyObject *version_10, *version_11; /* the request's HTTP version, as framing.decide reads it */

static void init_tables(void) {
    const char *marks = "!#$%&'*+-.^_`|~";
    int c;
    for (c = '0'; c <= '9'; c++) TOKEN[c] = 1;
    for (c = 'a'; c <= 'z'; c++) TOKEN[c] = 1;
    for (c = 'A'; c <= 'Z'; c++) TOKEN[c] = 1;
    for (; *marks; marks++) TOKEN[(unsigned char)*marks] = 1;
    for (c = 0x21; c <= 0x7e; c++) TEXT[c] = 1;
    TEXT[' '] = 1;
    TEXT['\t'] = 1;
    for (c = '0'; c <= '9'; c++) TARGET[c] = 1;
    for (c = 'a'; c <= 'z'; c++) TARGET[c] = 1;
    for (c = 'A'; c <= 'Z'; c++) TARGET[c] = 1;
    for (marks = "-._~!$&'()*+,;=:@/?%"; *marks; marks++) TARGET[(unsigned char)*marks] = 1;
}

/* ``s[0:n]`` equals the lower-case literal ``lit`` whatever its case (s holds token characters only,
 * so setting bit 0x20 maps exactly the upper-case letters onto the lower-case ones). */
static int same_name(const unsigned char *s, Py_ssize_t n, const char *lit, Py_ssize_t m) {
    Py_ssize_t i;
    if (n != m) return 0;
    for (i = 0; i < n; i++) {
        if ((s[i] | 0x20) != (unsigned char)lit[i]) return 0;
    }
    return 1;
}

/* What the gateway does with a field: pass it on (KEEP), leave it out (DROP), hand it to
 * build_request_head (DECIDED), read it here (LENGTH, CONNECTION, USER_AGENT, which is also kept), or
 * leave the whole head to llhttp (OTHER). */
enum kind { KEEP, DROP, DECIDED, LENGTH, CONNECTION, USER_AGENT, OTHER };

typedef struct {
    const char *name; /* lower case */
    Py_ssize_t size;
    enum kind request;  /* hop_by_hop.request_kind */
    enum kind response; /* hop_by_hop.response_kind */
} known_field;

/* Every name either head treats as more than KEEP, by size (FIRST_OF_SIZE indexes it); any other
 * ``Proxy-*`` name is dropped from both, and the rest are kept. */
static const known_field KNOWN[] = {
    {"te", 2, DROP, DROP},
    {"host", 4, DECIDED, KEEP},
    {"trailer", 7, DROP, DROP},
    {"upgrade", 7, OTHER, OTHER},
    {"forwarded", 9, DECIDED, KEEP},
    {"x-real-ip", 9, DROP, KEEP},
    {"connection", 10, CONNECTION, CONNECTION},
    {"keep-alive", 10, DROP, DROP},
    {"user-agent", 10, USER_AGENT, KEEP},
    {"tracestate", 10, DECIDED, KEEP},
    {"traceparent", 11, DECIDED, KEEP},
    {"x-request-id", 12, DECIDED, DROP},
    {"content-length", 14, OTHER, LENGTH},
    {"x-forwarded-for", 15, DECIDED, KEEP},
    {"x-forwarded-host", 16, DECIDED, KEEP},
    {"transfer-encoding", 17, OTHER, OTHER},
    {"x-forwarded-proto", 17, DECIDED, KEEP},
};
#define KNOWN_COUNT ((Py_ssize_t)(sizeof(KNOWN) / sizeof(KNOWN[0])))
#define LONGEST_KNOWN 17
static Py_ssize_t FIRST_OF_SIZE[LONGEST_KNOWN + 1]; /* KNOWN's first entry of each size, or KNOWN_COUNT */

/* The known entry for a field name, or NULL: a plain field (or a ``Proxy-*`` one, see field_kind). */
static const known_field *known(const unsigned char *name, Py_ssize_t n) {
    Py_ssize_t i;
    if (n > LONGEST_KNOWN) return NULL;
    for (i = FIRST_OF_SIZE[n]; i < KNOWN_COUNT && KNOWN[i].size == n; i++) {
        if (same_name(name, n, KNOWN[i].name, n)) return &KNOWN[i];
    }
    return NULL;
}

static void index_known(void) {
    Py_ssize_t i;
    for (i = 0; i <= LONGEST_KNOWN; i++) FIRST_OF_SIZE[i] = KNOWN_COUNT;
    for (i = KNOWN_COUNT - 1; i >= 0; i--) FIRST_OF_SIZE[KNOWN[i].size] = i;
}

static enum kind field_kind(const unsigned char *name, Py_ssize_t n, int request) {
    const known_field *k = known(name, n);
    if (k != NULL) return request ? k->request : k->response;
    if (n >= 6 && same_name(name, 6, "proxy-", 6)) return DROP; /* the Proxy-* family */
    return KEEP;
}

/* Reads a Connection value of ``close`` / ``keep-alive`` tokens; 0 for any other token. */
static int connection_tokens(const unsigned char *v, Py_ssize_t n, int *close, int *keep_alive) {
    Py_ssize_t i = 0, start, end;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        start = i;
        while (i < n && v[i] != ',') i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
        if (end == start) continue;
        if (same_name(v + start, end - start, "close", 5)) {
            *close = 1;
        } else if (same_name(v + start, end - start, "keep-alive", 10)) {
            *keep_alive = 1;
        } else {
            return 0;
        }
    }
    return 1;
}

typedef struct {
    const unsigned char *name;
    Py_ssize_t name_size;
    const unsigned char *value;
    Py_ssize_t value_size;
} field;

enum line { LINE_FIELD, LINE_END, LINE_OTHER };

/* The field line at ``*at`` (its name and value in ``*f``, ``*at`` moved past its CRLF), the empty
 * line that ends the head (``*at`` moved past it), or anything else: not all here yet, or not a line
 * of the kind accepted (see the top of this file), which leaves the head to llhttp. */
/* The first byte from ``p`` that is not TEXT (visible ASCII, space, tab), or ``end``.
 *
 * Values and reason phrases are most of a head's bytes (a Date alone is 29): a table lookup per byte
 * was about 6 instructions each, 600 per proxied request. With SSE2 (every x86-64 has it) 16 bytes are
 * classified at once: in signed bytes, TEXT is 0x20 to 0x7e and 0x09, so a byte is not TEXT when it
 * is below 0x20 (0x80 to 0xff, negative, included) and not a tab, or 0x7f. Never reads past ``end``:
 * the last bytes (fewer than 16) go through the table. */
static const unsigned char *skip_text(const unsigned char *p, const unsigned char *end) {
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20), tab = _mm_set1_epi8(0x09), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)p);
        __m128i below = _mm_andnot_si128(_mm_cmpeq_epi8(bytes, tab), _mm_cmplt_epi8(bytes, space));
        int outside = _mm_movemask_epi8(_mm_or_si128(below, _mm_cmpeq_epi8(bytes, del)));
        if (outside) return p + __builtin_ctz((unsigned int)outside);
        p += 16;
    }
#endif
    while (p < end && TEXT[*p]) p++;
    return p;
}

static enum line read_line(const unsigned char **at, const unsigned char *end, field *f) {
    const unsigned char *p = *at;
    if (end - p < 2) return LINE_OTHER;
    if (p[0] == '\r') {
        if (p[1] != '\n') return LINE_OTHER;
        *at = p + 2;
        return LINE_END;
    }
    f->name = p;
    while (p < end && TOKEN[*p]) p++;
    if (p == f->name || p >= end || *p != ':') return LINE_OTHER;
    f->name_size = p - f->name;
    p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    f->value = p;
    p = skip_text(p, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return LINE_OTHER;
    f->value_size = p - f->value;
    if (f->value_size && (p[-1] == ' ' || p[-1] == '\t')) return LINE_OTHER; /* trailing whitespace */
    *at = p + 2;
    return LINE_FIELD;
}

/* Writes ``name: value\r\n`` for each field (``out`` holds the sum of their sizes plus 4 each). */
/* The kept fields restated as ``Name: value\r\n`` lines, one bytes object of ``size`` (NULL: no memory). */
static PyObject *joined_fields(const field *fields, Py_ssize_t count, Py_ssize_t size) {
    Py_ssize_t i;
    char *out;
    PyObject *joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL) return NULL;
    out = PyBytes_AS_STRING(joined);
    for (i = 0; i < count; i++) {
        memcpy(out, fields[i].name, (size_t)fields[i].name_size);
        out += fields[i].name_size;
        *out++ = ':';
        *out++ = ' ';
        memcpy(out, fields[i].value, (size_t)fields[i].value_size);
        out += fields[i].value_size;
        *out++ = '\r';
        *out++ = '\n';
    }
    return joined;
}

/* Keep ``f`` for the other side's head; 0 when MAX_KEPT are kept already (the head is llhttp's). */
static int keep(field *kept, Py_ssize_t *count, Py_ssize_t *size, const field *f) {
    if (*count == MAX_KEPT) return 0;
    kept[(*count)++] = *f;
    *size += f->name_size + f->value_size + 4;
    return 1;
}

/* Keep-alive by the HTTP version and the Connection tokens; -1 when HTTP/1.0 says both close and
 * keep-alive (contradictory: llhttp's call). */
static int keep_alive_of(int minor, int close, int keep_alive_token) {
    if (minor == 0 && close && keep_alive_token) return -1;
    return minor == 1 ? !close : keep_alive_token;
}

/* A tuple of ``count`` new references, or NULL (and every one released) if any is NULL.
 * Py_BuildValue would parse a format string per call: about 1,000 instructions per request. */
static PyObject *tuple_of(Py_ssize_t count, PyObject **items) {
    Py_ssize_t i;
    PyObject *tuple = PyTuple_New(count);
    for (i = 0; i < count; i++) {
        if (items[i] == NULL || tuple == NULL) {
            for (i = 0; i < count; i++) Py_XDECREF(items[i]);
            Py_XDECREF(tuple);
            return NULL;
        }
    }
    for (i = 0; i < count; i++) PyTuple_SET_ITEM(tuple, i, items[i]);
    return tuple;
}

static PyObject *bytes_of(const unsigned char *start, Py_ssize_t size) {
    return PyBytes_FromStringAndSize((const char *)start, size);
}

PyDoc_STRVAR(scan_response_doc,
"scan_response(data: bytes, bodiless: bool) -> tuple | None\n\n"
"The response head at the start of ``data``, when it is whole and of the usual kind: (status, kept\n"
"fields, Content-Length value or None, body length, keep-alive, head size). None: let llhttp read it.\n"
"``bodiless``: the request was HEAD (no body follows whatever the head says).");

static PyObject *scan_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *start, *p, *end, *name, *value, *length_at = NULL;
    Py_ssize_t size, name_size, value_size, length_size = 0, kept_size = 0, kept_count = 0, i;
    long long length = -1;
    int status, minor, bodiless, close = 0, keep_alive_token = 0, keep_alive;
    field kept[MAX_KEPT], f;
    enum line line;
    PyObject *kept_bytes, *length_value;

    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_response(data: bytes, bodiless: bool)");
        return NULL;
    }
    bodiless = PyObject_IsTrue(args[1]);
    if (bodiless < 0) return NULL;
    start = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    size = PyBytes_GET_SIZE(args[0]);
    end = start + size;

    /* status line: HTTP/1.x SSS reason CRLF */
    if (size < 17 || memcmp(start, "HTTP/1.", 7) != 0 || (start[7] != '0' && start[7] != '1')
        || start[8] != ' ' || start[9] < '2' || start[9] > '5' || start[10] < '0' || start[10] > '9'
        || start[11] < '0' || start[11] > '9' || start[12] != ' ') {
        Py_RETURN_NONE;
    }
    minor = start[7] - '0';
    status = (start[9] - '0') * 100 + (start[10] - '0') * 10 + (start[11] - '0');
    p = skip_text(start + 13, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') Py_RETURN_NONE;
    p += 2;

    /* field lines, up to the empty line */
    for (;;) {
        line = read_line(&p, end, &f);
        if (line == LINE_END) break;
        if (line == LINE_OTHER) Py_RETURN_NONE;
        name = f.name;
        name_size = f.name_size;
        value = f.value;
        value_size = f.value_size;
        switch (field_kind(name, name_size, 0)) {
        case KEEP:
            if (!keep(kept, &kept_count, &kept_size, &f)) Py_RETURN_NONE;
            break;
        case LENGTH:
            if (length_at != NULL || value_size < 1 || value_size > MAX_LENGTH_DIGITS) Py_RETURN_NONE;
            length = 0;
            for (i = 0; i < value_size; i++) {
                if (value[i] < '0' || value[i] > '9') Py_RETURN_NONE;
                length = length * 10 + (value[i] - '0');
            }
            length_at = value;
            length_size = value_size;
            break;
        case CONNECTION:
            if (!connection_tokens(value, value_size, &close, &keep_alive_token)) Py_RETURN_NONE;
            break;
        case DROP:
            break;
        case OTHER:
        default: /* not reached: KNOWN gives each head only the kinds handled here */
            Py_RETURN_NONE;
        }
    }

    /* framing: a body of Content-Length bytes, or none */
    if (bodiless || status == 204 || status == 304) {
        length = 0;
    } else if (length_at == NULL) {
        Py_RETURN_NONE; /* read until close: llhttp's */
    }
    keep_alive = keep_alive_of(minor, close, keep_alive_token);
    if (keep_alive < 0) Py_RETURN_NONE;
    if (length_at == NULL && status != 204 && status != 304) {
        keep_alive = 0; /* a HEAD answer without Content-Length: llhttp would read to close, so no reuse */
    }

    kept_bytes = joined_fields(kept, kept_count, kept_size);
    if (kept_bytes == NULL) return NULL;
    if (length_at != NULL) {
        length_value = PyBytes_FromStringAndSize((const char *)length_at, length_size);
        if (length_value == NULL) {
            Py_DECREF(kept_bytes);
            return NULL;
        }
    } else {
        length_value = Py_NewRef(Py_None);
    }
    {
        PyObject *items[6] = {
            PyLong_FromLong(status), kept_bytes, length_value, PyLong_FromLongLong(length),
            PyBool_FromLong(keep_alive), PyLong_FromSsize_t(p - start),
        };
        return tuple_of(6, items);
    }
}

PyDoc_STRVAR(scan_request_doc,
"scan_request(data: bytes, limit: int) -> tuple | None\n\n"
"The bodiless request head at the start of ``data``, when it is whole, at most ``limit`` bytes and of\n"
"the usual kind: (method, target, version, keep-alive, kept fields, decided fields or None, user agent\n"
"or None, the Host value when there is exactly one (else None; several stay among the decided fields),\n"
"head size). None: let llhttp read it.");

static PyObject *scan_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    const unsigned char *start, *p, *end, *name, *value, *target, *agent = NULL;
    Py_ssize_t size, limit, name_size, value_size, target_size, agent_size = 0, kept_size = 0;
    Py_ssize_t kept_count = 0, decided_count = 0, method_size, measured, i;
    Py_ssize_t hosts = 0, host_at = -1; /* Host lines, and the one's place among the decided */
    const unsigned char *host_value = NULL;
    Py_ssize_t host_size = 0;
    int minor, close = 0, keep_alive_token = 0, keep_alive;
    field kept[MAX_KEPT], decided[MAX_KEPT], f;
    enum line line;
    PyObject *kept_bytes, *decided_list;

    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_request(data: bytes, limit: int)");
        return NULL;
    }
    limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (limit < 0) limit = 0;
    start = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    size = PyBytes_GET_SIZE(args[0]);
    if (size > limit) size = limit; /* a head past the limit is never whole here: llhttp answers 431 */
    end = start + size;

    /* request line: METHOD SP origin-form SP HTTP/1.x CRLF */
    p = start;
    while (p < end && *p >= 'A' && *p <= 'Z') p++;
    method_size = p - start;
    if (!((method_size == 3 && memcmp(start, "GET", 3) == 0) || (method_size == 4 && memcmp(start, "HEAD", 4) == 0)
          || (method_size == 7 && memcmp(start, "OPTIONS", 7) == 0)
          || (method_size == 6 && memcmp(start, "DELETE", 6) == 0))) {
        Py_RETURN_NONE;
    }
    if (p >= end || *p != ' ') Py_RETURN_NONE;
    target = ++p;
    if (p >= end || *p != '/') Py_RETURN_NONE;
    while (p < end && TARGET[*p]) p++;
    target_size = p - target;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1') || p[9] != '\r'
        || p[10] != '\n') {
        Py_RETURN_NONE;
    }
    minor = p[8] - '0';
    p += 11;
    /* the head's size as the llhttp path measures it for 431 (proxy._head_size), which counts ": "
     * for every field: a head over the limit by either measure is llhttp's to refuse */
    measured = target_size + 16;

    for (;;) {
        line = read_line(&p, end, &f);
        if (line == LINE_END) break;
        if (line == LINE_OTHER) Py_RETURN_NONE;
        name = f.name;
        name_size = f.name_size;
        value = f.value;
        value_size = f.value_size;
        measured += name_size + value_size + 4;
        switch (field_kind(name, name_size, 1)) {
        case USER_AGENT:
            agent = value; /* the last one, as the llhttp path records it; kept in place too */
            agent_size = value_size;
            /* fall through */
        case KEEP:
            if (!keep(kept, &kept_count, &kept_size, &f)) Py_RETURN_NONE;
            break;
        case CONNECTION:
            if (!connection_tokens(value, value_size, &close, &keep_alive_token)) Py_RETURN_NONE;
            /* fall through: build_request_head reads it (it decides the HTTP version's keep-alive) */
        case DECIDED:
            if (decided_count == MAX_KEPT) Py_RETURN_NONE;
            if (name_size == 4 && same_name(name, 4, "host", 4)) {
                hosts++;
                host_at = decided_count;
            }
            decided[decided_count++] = f;
            break;
        case DROP:
            break;
        case OTHER:
        default: /* not reached: KNOWN gives each head only the kinds handled here */
            Py_RETURN_NONE;
        }
    }
    if (measured > limit) Py_RETURN_NONE;
    keep_alive = keep_alive_of(minor, close, keep_alive_token);
    if (keep_alive < 0) Py_RETURN_NONE;

    /* A single Host comes back on its own (the usual request decides on nothing else: no list, no
     * pair); two or more stay among the decided fields, where framing.decide counts and refuses them. */
    if (hosts == 1) {
        host_value = decided[host_at].value;
        host_size = decided[host_at].value_size;
        memmove(&decided[host_at], &decided[host_at + 1], (size_t)(decided_count - host_at - 1) * sizeof(field));
        decided_count--;
    }
    kept_bytes = joined_fields(kept, kept_count, kept_size);
    if (kept_bytes == NULL) return NULL;
    if (decided_count == 0) {
        decided_list = Py_NewRef(Py_None);
    } else {
        decided_list = PyList_New(decided_count);
        if (decided_list == NULL) {
            Py_DECREF(kept_bytes);
            return NULL;
        }
        for (i = 0; i < decided_count; i++) {
            PyObject *pair[2] = {bytes_of(decided[i].name, decided[i].name_size),
                                 bytes_of(decided[i].value, decided[i].value_size)};
            PyObject *item = tuple_of(2, pair);
            if (item == NULL) {
                Py_DECREF(kept_bytes);
                Py_DECREF(decided_list); /* its unset items are NULL, which list_dealloc skips */
                return NULL;
            }
            PyList_SET_ITEM(decided_list, i, item);
        }
    }
    {
        PyObject *items[9] = {
            bytes_of(start, method_size),
            bytes_of(target, target_size),
            Py_NewRef(minor ? version_11 : version_10),
            PyBool_FromLong(keep_alive),
            kept_bytes,
            decided_list,
            agent != NULL ? bytes_of(agent, agent_size) : Py_NewRef(Py_None),
            host_value != NULL ? bytes_of(host_value, host_size) : Py_NewRef(Py_None),
            PyLong_FromSsize_t(p - start),
        };
        return tuple_of(9, items);
    }
}

static PyMethodDef methods[] = {
    {"scan_response", (PyCFunction)(void (*)(void))scan_response, METH_FASTCALL, scan_response_doc},
    {"scan_request", (PyCFunction)(void (*)(void))scan_request, METH_FASTCALL, scan_request_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "head_scan",
    "The usual request and response heads read and restated in one native call (see head_scan.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit_head_scan(void) {
    init_tables();
    index_known();
    if (version_10 == NULL) version_10 = PyUnicode_InternFromString("1.0"); /* once per process */
    if (version_11 == NULL) version_11 = PyUnicode_InternFromString("1.1");
    if (version_10 == NULL || version_11 == NULL) return NULL;
    return PyModule_Create(&module);
}
