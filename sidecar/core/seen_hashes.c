/* seen_hashes: one generation of request-ID hashes (http_metrics.first_sighting), in native code.
 *
 * Why by hand: first_sighting runs for every proxied request and every log line with a request ID.
 * The table is an open-addressing array of 64-bit words over an anonymous mapping (http_metrics.py
 * says why: 1 MB per generation, resident only as hashes land in it). Compiled with mypyc, each
 * probe and store still went through a memoryview's item protocol (a Python int made and parsed per
 * access): about 1,350 instructions per insert, 1,800 with the hash, a twentieth of a proxied
 * request. Here an insert is a handful of machine instructions after the call. No library offers
 * a set of machine words with this memory profile (Python's set keeps an int object per entry).
 *
 * The same table as http_metrics._Hashes, which runs where this is not built: a key is a hash (a
 * nonzero int that fits in 64 bits; 0 marks an empty slot), its slot is the key's low bits, and a
 * collision moves on to the next slot. tests/unit/core/test_seen_hashes.py holds the two to the same
 * answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>
#include <sys/mman.h>

typedef struct {
    PyObject_HEAD
    uint64_t *slots; /* NULL until mapped */
    size_t mask;     /* slots - 1: the slot count is a power of two */
    Py_ssize_t count;
} HashTable;

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"slots", NULL};
    Py_ssize_t slots;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n", keywords, &slots)) {
        return NULL;
    }
    if (slots <= 0 || (slots & (slots - 1)) != 0 || slots > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "HashTable: slots must be a power of two");
        return NULL;
    }
    HashTable *self = (HashTable *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    void *mapped = mmap(NULL, (size_t)slots * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    self->slots = mapped;
    self->mask = (size_t)slots - 1;
    self->count = 0;
    return (PyObject *)self;
}

static void table_dealloc(HashTable *self)
{
    if (self->slots != NULL) {
        munmap(self->slots, (self->mask + 1) * sizeof(uint64_t));
        self->slots = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The key as the table stores it; 0 with an exception set when it is not a nonzero 64-bit int. */
static uint64_t key_of(PyObject *key)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return 0;
    }
    if (overflow != 0 || value == 0) {
        PyErr_SetString(PyExc_ValueError, "HashTable: a key is a nonzero int of at most 64 bits");
        return 0;
    }
    return (uint64_t)value;
}

static PyObject *table_add(HashTable *self, PyObject *key)
{
    uint64_t wanted = key_of(key);
    if (wanted == 0) {
        return NULL;
    }
    size_t index = (size_t)wanted & self->mask;
    for (;;) {
        uint64_t value = self->slots[index];
        if (value == wanted) {
            Py_RETURN_FALSE;
        }
        if (value == 0) {
            if ((size_t)self->count >= self->mask) { /* one slot stays empty: a probe always ends */
                PyErr_SetString(PyExc_OverflowError, "HashTable is full");
                return NULL;
            }
            self->slots[index] = wanted;
            self->count++;
            Py_RETURN_TRUE;
        }
        index = (index + 1) & self->mask;
    }
}

static int table_contains(HashTable *self, PyObject *key)
{
    uint64_t wanted = key_of(key);
    if (wanted == 0) {
        return -1;
    }
    size_t index = (size_t)wanted & self->mask;
    for (;;) {
        uint64_t value = self->slots[index];
        if (value == wanted) {
            return 1;
        }
        if (value == 0) {
            return 0;
        }
        index = (index + 1) & self->mask;
    }
}

static PyMethodDef table_methods[] = {
    {"add", (PyCFunction)table_add, METH_O, "add(key) -> bool: insert a nonzero hash; False when it was there"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef table_members[] = {
    {"count", T_PYSSIZET, offsetof(HashTable, count), READONLY, "keys inserted"},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods table_as_sequence = {
    .sq_contains = (objobjproc)table_contains,
};

static PyTypeObject HashTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sidecar.core.seen_hashes.HashTable",
    .tp_doc = "HashTable(slots): nonzero 64-bit hashes by open addressing, over an anonymous mapping.",
    .tp_basicsize = sizeof(HashTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = table_new,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_methods = table_methods,
    .tp_members = table_members,
    .tp_as_sequence = &table_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "seen_hashes", "One generation of request-ID hashes, in native code.", -1, NULL,
};

PyMODINIT_FUNC PyInit_seen_hashes(void)
{
    if (PyType_Ready(&HashTableType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) {
        return NULL;
    }
    Py_INCREF(&HashTableType);
    if (PyModule_AddObject(created, "HashTable", (PyObject *)&HashTableType) < 0) {
        Py_DECREF(&HashTableType);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
