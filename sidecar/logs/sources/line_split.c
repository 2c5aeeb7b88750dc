/* line_split: a chunk of a log split at every "\n", exactly as ``bytes.split(b"\n")`` splits it.
 *
 * Why by hand: CPython splits at a one-byte separator by comparing byte after byte (stringlib's
 * split_char loop), about 0.12 us per 250-byte log line, and the split runs on the event loop, in
 * series with parsing, once per 512 KiB chunk a file source reads. memchr finds the next newline a
 * vector at a time: the same chunk splits in a third of the time. No library hands back the lines
 * without their newlines: ``io.BytesIO.readlines`` uses memchr too, but keeps every "\n", which every
 * consumer of a line would then have to strip (a copy per line).
 *
 * Nothing is decided here: the result is the list ``bytes.split(b"\n")`` returns (the last item is
 * what follows the last newline, empty when the chunk ends with one), which lines.py uses unchanged
 * when this module was not built. tests/unit/logs/test_line_split.py holds the two to the same output.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

PyDoc_STRVAR(split_lines_doc,
             "split_lines(data, /)\n--\n\n"
             "``data.split(b\"\\n\")``, finding each newline with memchr.");

static PyObject *split_lines(PyObject *module, PyObject *data) {
    const char *start, *end, *newline;
    PyObject *lines, *line;
    (void)module;
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "split_lines() takes bytes");
        return NULL;
    }
    start = PyBytes_AS_STRING(data);
    end = start + PyBytes_GET_SIZE(data);
    lines = PyList_New(0);
    if (lines == NULL) return NULL;
    for (;;) {
        newline = memchr(start, '\n', (size_t)(end - start));
        line = PyBytes_FromStringAndSize(start, (newline != NULL ? newline : end) - start);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(lines);
            return NULL;
        }
        Py_DECREF(line);
        if (newline == NULL) return lines;
        start = newline + 1;
    }
}

static PyMethodDef methods[] = {
    {"split_lines", (PyCFunction)split_lines, METH_O, split_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "line_split",
    "A chunk of a log split at every newline with memchr (see line_split.c).", -1, methods,
};

PyMODINIT_FUNC PyInit_line_split(void) { return PyModule_Create(&module); }
