/* One plugin call in C: the fast path behind sandbox/raw.py's CallSite.

A plugin call through ctypes makes six foreign calls (set fuel, set the epoch deadline,
aspen_alloc, the export, aspen_free, read the fuel left), each 0.5 to 1 us of ctypes argument
and result handling, plus the Python around them. Here the same sequence is one C call.

Nothing is linked: Python passes the addresses of the wasmtime C API functions (taken from
wasmtime-py's own library handle, so the same library the rest of the sandbox uses) and of the
store, memory and functions, in a CallSite struct whose layout sandbox/raw.py mirrors with
ctypes and checks against SITE_BYTES. Checks are the same as the Python path's: the pointer the
guest allocator returns must lie inside memory, the output buffer must lie inside memory and be
at most out_max bytes. Traps and errors are handed back as addresses for Python to decode.

The GIL: guest code starts holding it, and gives it up at the first epoch tick (1 ms) it is
still running (on_deadline); the entry that started it takes it back when the guest returns.
Nearly every call is far shorter than a tick and so costs no hand-off of the GIL at all: on a
busy node each hand-off was a wait for the event loop or the Raft thread, and releasing it
around every entry cost a KV-reading plugin about a third of its worker's time. A slow guest
holds the GIL for at most one tick and then runs beside the rest of the node until its
deadline. The epoch ticker is a C thread of its own, so deadlines fire while guest code holds
the GIL. Host functions called by the guest go through host_trampoline (below), which takes
the GIL if guest code gave it up.
*/
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* pthread_setname_np */
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct {
    uint64_t lo;
    uint64_t hi;
} val_raw; /* wasmtime_val_raw_t: a 16-byte union; i32 and i64 sit in the low 8 bytes */

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, val_raw *vals, size_t n, void **trap);
typedef void *(*set_fuel_fn)(void *ctx, uint64_t fuel);
typedef void *(*get_fuel_fn)(const void *ctx, uint64_t *fuel);
typedef void (*set_epoch_fn)(void *ctx, uint64_t ticks);
typedef uint8_t *(*memory_data_fn)(const void *ctx, const void *mem);
typedef size_t (*memory_size_fn)(const void *ctx, const void *mem);
typedef void (*error_delete_fn)(void *error);
typedef void *(*error_new_fn)(const char *message);
typedef void *(*deadline_fn)(void *ctx, void *env, uint64_t *delta, uint8_t *kind);
typedef void (*deadline_callback_fn)(void *store, deadline_fn func, void *env, void (*finalizer)(void *));
typedef void (*increment_epoch_fn)(void *engine);
typedef void *(*engine_clone_fn)(void *engine);
typedef void (*engine_delete_fn)(void *engine);

typedef struct {
    call_unchecked_fn call_unchecked;
    set_fuel_fn set_fuel;
    get_fuel_fn get_fuel;
    set_epoch_fn set_epoch_deadline;
    memory_data_fn memory_data;
    memory_size_fn memory_size;
    error_delete_fn error_delete;
    error_new_fn error_new;
    deadline_callback_fn deadline_callback;
    void *ctx;   /* wasmtime_context_t* */
    void *mem;   /* wasmtime_memory_t* */
    void *alloc; /* wasmtime_func_t* of aspen_alloc */
    void *free;  /* wasmtime_func_t* of aspen_free, or NULL */
    uint64_t out_max;
    uint64_t decode[4];    /* the output's decoding bound: depth_max, factor, slack, cap (Bound) */
    const uint64_t *now;   /* the epoch ticker's count of ticks (Ticker.ticks), read atomically */
    /* State of the call running now (one at a time per instance: PluginInstance's lock). */
    uint64_t deadline;     /* the tick count at which this call has run out of time */
    uint64_t timed_out;    /* set when it did (the deadline callback or a host function's return) */
    PyThreadState *saved;  /* the GIL given up by guest code at this entry level, or NULL */
} CallSite;

enum { OK = 0, TRAPPED = 1, FAULT = 2, TIMED_OUT = 3, INVALID_OUTPUT = 4 };

/* Decoding bound (Bound, walk_msgpack, decode_bound): shared with wire/_msgwalk.c. */
#include "../wire/msgwalk.h"

enum { UPDATE_DEADLINE_CONTINUE = 0 };

static const char TIMED_OUT_MESSAGE[] = "aspen: the call ran past its execution timeout";

/* Whether the running call is past its deadline. The ticker's own count, not a count of
   callbacks: wasmtime calls on_deadline once when guest code resumes after a host call however
   many ticks that host call took (counting callbacks, 20 ms host calls stretched a 0.2 s
   timeout to 4 s). No clock is read: a plugin call is a few hundred ns. */
static int past_deadline(const CallSite *site) {
    return __atomic_load_n(site->now, __ATOMIC_RELAXED) >= site->deadline;
}

/* Called by wasmtime on the guest's thread, from inside guest code, at each epoch tick past
   the deadline (the store's deadline is always the next tick). Guest code starts holding the
   GIL: a call shorter than a tick (nearly all of them) then costs no hand-off of the GIL at
   all. At the first tick it is still running it gives the GIL up, so a slow guest holds it for
   at most one tick and then runs beside the event loop and Raft; past its deadline it stops. */
static void *on_deadline(void *ctx, void *env, uint64_t *delta, uint8_t *kind) {
    CallSite *site = (CallSite *)env;
    if (past_deadline(site)) {
        site->timed_out = 1;
        return site->error_new(TIMED_OUT_MESSAGE);
    }
    if (site->saved == NULL && PyGILState_Check())
        site->saved = PyEval_SaveThread();
    *delta = 1;
    *kind = UPDATE_DEADLINE_CONTINUE;
    return NULL;
}

/* Run guest code. The caller holds the GIL; on_deadline may give it up during the call (see
   there), and then it is taken back here before returning. Entries nest (a host function's
   result goes through aspen_alloc), so each level keeps the outer level's saved state. */
static int enter(CallSite *site, const void *func, val_raw *vals, void **error, void **trap) {
    PyThreadState *outer = site->saved;
    site->saved = NULL;
    *trap = NULL;
    *error = site->call_unchecked(site->ctx, func, vals, 2, trap);
    if (site->saved != NULL)
        PyEval_RestoreThread(site->saved);
    site->saved = outer;
    return *error == NULL && *trap == NULL;
}

/* The address a Python int holds; NULL with an exception set if it is not one, or is 0. */
static void *address_of(PyObject *value, const char *what) {
    void *address = PyLong_AsVoidPtr(value);
    if (address == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "null %s", what);
    return address;
}

static CallSite *site_of(PyObject *address) {
    return (CallSite *)address_of(address, "call site");
}

/* What one call did. */
typedef struct {
    int status;          /* OK, TRAPPED or FAULT */
    void *error, *trap;  /* TRAPPED */
    int fault;           /* FAULT: which check failed */
    uint32_t ptr, n;     /* the pointer and length the fault is about */
    size_t size;         /* memory size at the fault */
    char *out;           /* OK: a malloc'd copy of the output, or NULL for none */
    uint32_t out_n;
} Outcome;

enum { BAD_ALLOC_POINTER = 1, OUTPUT_TOO_LARGE, OUTPUT_OUTSIDE, NO_HOST_MEMORY };

/* Copy data into a buffer from the guest's allocator (the call's input, or a host function's
   result): 1 and *ptr, or 0 with the failure in *o (TRAPPED, or FAULT BAD_ALLOC_POINTER when
   the buffer does not lie inside memory). */
static int copy_in(CallSite *site, const char *data, Py_ssize_t n, uint32_t *ptr, Outcome *o) {
    val_raw vals[2] = {{(uint64_t)(uint32_t)n, 0}, {0, 0}};
    if (!enter(site, site->alloc, vals, &o->error, &o->trap)) {
        o->status = TRAPPED;
        return 0;
    }
    *ptr = (uint32_t)vals[0].lo;
    uint8_t *base = site->memory_data(site->ctx, site->mem);
    size_t size = site->memory_size(site->ctx, site->mem);
    if (*ptr == 0 || base == NULL || (uint64_t)*ptr + (uint64_t)n > size) {
        *o = (Outcome){.status = FAULT, .fault = BAD_ALLOC_POINTER, .ptr = *ptr, .n = (uint32_t)n, .size = size};
        return 0;
    }
    memcpy(base + *ptr, data, (size_t)n);
    return 1;
}

/* What a FAULT outcome says, as a new str (NULL with MemoryError for NO_HOST_MEMORY). */
static PyObject *fault_message(const CallSite *site, const Outcome *o) {
    switch (o->fault) {
    case BAD_ALLOC_POINTER:
        return PyUnicode_FromFormat(
            "aspen_alloc(%u) returned an unusable pointer %u: guest buffer [%u, %u+%u) is outside "
            "memory of %zu bytes", o->n, o->ptr, o->ptr, o->ptr, o->n, o->size);
    case OUTPUT_TOO_LARGE:
        return PyUnicode_FromFormat("guest returned a buffer of %u bytes, over %llu", o->n,
                                    (unsigned long long)site->out_max);
    case OUTPUT_OUTSIDE:
        return PyUnicode_FromFormat(
            "guest returned a buffer outside its memory: guest range [%u, %u+%u) is outside "
            "memory of %zu bytes", o->ptr, o->ptr, o->n, o->size);
    default:
        return PyErr_NoMemory();
    }
}

static void run_call(CallSite *site, const void *func, const char *in, Py_ssize_t in_n, Outcome *o) {
    val_raw vals[2] = {{0, 0}, {0, 0}};
    if (in != NULL) {
        uint32_t ptr;
        if (!copy_in(site, in, in_n, &ptr, o))
            return;
        vals[0].lo = ptr;
        vals[1].lo = (uint64_t)(uint32_t)in_n;
    }
    if (!enter(site, func, vals, &o->error, &o->trap)) {
        o->status = TRAPPED;
        return;
    }
    uint64_t packed = vals[0].lo;
    if (packed == 0)
        return;
    uint32_t ptr = (uint32_t)(packed >> 32), n = (uint32_t)packed;
    if (n > site->out_max) {
        *o = (Outcome){.status = FAULT, .fault = OUTPUT_TOO_LARGE, .ptr = ptr, .n = n};
        return;
    }
    uint8_t *base = site->memory_data(site->ctx, site->mem);
    size_t size = site->memory_size(site->ctx, site->mem);
    if (base == NULL || (uint64_t)ptr + n > size) {
        *o = (Outcome){.status = FAULT, .fault = OUTPUT_OUTSIDE, .ptr = ptr, .n = n, .size = size};
        return;
    }
    o->out = malloc(n ? n : 1);
    if (o->out == NULL) {
        *o = (Outcome){.status = FAULT, .fault = NO_HOST_MEMORY, .n = n};
        return;
    }
    memcpy(o->out, base + ptr, n);
    o->out_n = n;
    if (site->free != NULL) {
        vals[0].lo = ptr;
        vals[1].lo = n;
        if (!enter(site, site->free, vals, &o->error, &o->trap)) {
            free(o->out);
            o->out = NULL;
            o->status = TRAPPED;
        }
    }
}

/* call(site, func, payload | None, fuel, ticks) -> (status, value, fuel_left)
   OK: value is the output bytes or None. TRAPPED or TIMED_OUT: (error, trap) addresses. FAULT:
   a message. INVALID_OUTPUT: a message, why the output may not be decoded (see Bound).
   `ticks` is the call's whole wall-clock budget in epoch ticks, host calls included: it times
   out at the first check after `ticks` whole ticks have passed since it started, so within one
   tick after its timeout. */
static PyObject *guest_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "call(site, func, payload, fuel, ticks)");
        return NULL;
    }
    CallSite *site = site_of(args[0]);
    if (site == NULL)
        return NULL;
    void *func = address_of(args[1], "function");
    if (func == NULL)
        return NULL;
    unsigned long long fuel = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *payload = args[2];
    if (payload != Py_None && !PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "payload: bytes or None");
        return NULL;
    }
    void *error = site->set_fuel(site->ctx, fuel);
    if (error != NULL)
        return Py_BuildValue("(i(KK)K)", TRAPPED, (unsigned long long)(uintptr_t)error, 0ULL, 0ULL);
    /* The call starts between two ticks: the deadline is the tick that ends `ticks` whole ones. */
    site->deadline = __atomic_load_n(site->now, __ATOMIC_RELAXED) + ticks + 1;
    site->timed_out = 0;
    site->saved = NULL;
    site->set_epoch_deadline(site->ctx, 1);

    Outcome o = {0};
    const char *in = payload == Py_None ? NULL : PyBytes_AS_STRING(payload);
    Py_ssize_t in_n = payload == Py_None ? 0 : PyBytes_GET_SIZE(payload);
    run_call(site, func, in, in_n, &o);

    uint64_t left = 0;
    void *fuel_error = site->get_fuel(site->ctx, &left);
    if (fuel_error != NULL) { /* fuel is always enabled on our engines; this only skews the stat */
        site->error_delete(fuel_error);
        left = 0;
    }
    unsigned long long fuel_left = (unsigned long long)left;
    if (o.status == TRAPPED)
        return Py_BuildValue("(i(KK)K)", site->timed_out ? TIMED_OUT : TRAPPED, (unsigned long long)(uintptr_t)o.error,
                             (unsigned long long)(uintptr_t)o.trap, fuel_left);
    if (o.status == FAULT) {
        PyObject *message = fault_message(site, &o);
        if (message == NULL)
            return NULL;
        return Py_BuildValue("(iNK)", FAULT, message, fuel_left);
    }
    if (o.out == NULL)
        return Py_BuildValue("(iOK)", OK, Py_None, fuel_left);
    size_t at;
    int walked = walk_msgpack((const uint8_t *)o.out, o.out_n, (const Bound *)site->decode, &at);
    if (walked != WALK_OK) {
        free(o.out);
        PyObject *message = walk_message(walked, (const Bound *)site->decode, o.out_n, at);
        if (message == NULL)
            return NULL;
        return Py_BuildValue("(iNK)", INVALID_OUTPUT, message, fuel_left);
    }
    PyObject *out = PyBytes_FromStringAndSize(o.out, o.out_n);
    free(o.out);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(iNK)", OK, out, fuel_left);
}

/* watch(site, store): route the store's epoch deadlines to on_deadline (after instantiation;
   until then the plain deadline applies and running past it traps). */
static PyObject *guest_watch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "watch(site, store)");
        return NULL;
    }
    CallSite *site = site_of(args[0]);
    if (site == NULL)
        return NULL;
    void *store = address_of(args[1], "store");
    if (store == NULL)
        return NULL;
    site->deadline_callback(store, on_deadline, site, NULL);
    Py_RETURN_NONE;
}

/* Host functions: wasmtime calls host_trampoline (an unchecked callback) with the raw value
   array; it turns the i32 arguments into Python ints, calls the bound HostFunctions method, and
   writes its result back: an int as is, bytes through copy_in (the ABI's guest-allocated
   buffer, packed as ptr << 32 | len). Through a ctypes callback the same round trip cost about
   1 us more: ctypes builds its argument objects, a view of the value array, and the result's
   copy went back through Python into the C copy_in.

   Any failure becomes a trap whose message the Python `on_error(kind, value)` writes (it knows
   the function's name, logs host bugs and remembers an allocator's trap code):
   kind HOST_RAISED with the exception, HOST_TRAPPED with the allocator's (error, trap)
   addresses, HOST_FAULT with a message (the allocator returned an unusable pointer). */
typedef void *(*trap_new_fn)(const char *message, size_t n);
typedef void *(*define_unchecked_fn)(void *linker, const char *module, size_t module_n, const char *name,
                                     size_t name_n, const void *ty, void *cb, void *env, void (*finalizer)(void *));

enum { HOST_RAISED = 0, HOST_TRAPPED = 1, HOST_FAULT = 2 };
enum { HOST_PARAMS_MAX = 8 };

/* method and on_error are borrowed: the CallSite the function is bound to holds them (Python
   side, where the cycle collector sees them). Strong references here would be invisible to it,
   and any path from them back to the store (a Host that reaches its plugins, say) would make
   an uncollectable cycle. Guest code runs only through the bound CallSite, which lives as long
   as the store, so they are alive whenever the trampoline runs Python. */
typedef struct AeadFast AeadFast;

typedef struct {
    PyObject *method;
    PyObject *on_error;
    CallSite *site;      /* NULL until bind_host: guest code that calls out while instantiating */
    trap_new_fn trap_new;
    int nparams;
    int has_result;
    AeadFast *fast;      /* set by serve_aead: calls it can answer never reach `method` */
} HostFunc;

static int aead_fast(HostFunc *h, val_raw *vals, void **trap);

/* The exception being raised, as one object (PyErr_GetRaisedException from 3.12 on). */
static PyObject *raised(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static void *host_trap(HostFunc *h, const char *message) {
    return h->trap_new(message, strlen(message));
}

/* The trap for a failure: the message comes from on_error; if that fails too, a fixed one. */
static void *host_failed(HostFunc *h, int kind, PyObject *value) {
    void *trap = NULL;
    PyObject *message = value == NULL ? NULL : PyObject_CallFunction(h->on_error, "iO", kind, value);
    Py_XDECREF(value);
    if (message != NULL && PyUnicode_Check(message)) {
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(message, &n);
        if (text != NULL)
            trap = h->trap_new(text, (size_t)n);
    }
    Py_XDECREF(message);
    if (trap == NULL) {
        if (PyErr_Occurred())
            PyErr_WriteUnraisable(h->on_error);
        trap = host_trap(h, "aspen: host function failed");
    }
    return trap;
}

/* The trap for a result that could not be copied in (the guest's allocator trapped, or gave an
   unusable pointer). host_failed takes a NULL value (no memory for it) too. */
static void *copy_in_failed(HostFunc *h, const Outcome *o) {
    return o->status == FAULT ? host_failed(h, HOST_FAULT, fault_message(h->site, o))
                              : host_failed(h, HOST_TRAPPED, Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)o->error,
                                                                           (unsigned long long)(uintptr_t)o->trap));
}

static void *host_call(HostFunc *h, val_raw *vals) {
    if (h->site == NULL)
        return host_trap(h, "aspen: host function called while the module was being instantiated");
    PyObject *args[HOST_PARAMS_MAX];
    for (int i = 0; i < h->nparams; i++) {
        args[i] = PyLong_FromLong((long)(int32_t)(uint32_t)vals[i].lo);
        if (args[i] == NULL) {
            while (i-- > 0)
                Py_DECREF(args[i]);
            return host_failed(h, HOST_RAISED, raised());
        }
    }
    PyObject *result = PyObject_Vectorcall(h->method, args, (size_t)h->nparams, NULL);
    for (int i = 0; i < h->nparams; i++)
        Py_DECREF(args[i]);
    if (result == NULL)
        return host_failed(h, HOST_RAISED, raised());
    if (!h->has_result) {
        Py_DECREF(result);
        return NULL;
    }
    if (PyBytes_Check(result)) {
        uint32_t ptr = 0;
        Py_ssize_t n = PyBytes_GET_SIZE(result);
        Outcome o = {0};
        int copied = copy_in(h->site, PyBytes_AS_STRING(result), n, &ptr, &o);
        Py_DECREF(result);
        if (!copied)
            return copy_in_failed(h, &o);
        vals[0].lo = ((uint64_t)ptr << 32) | (uint64_t)(uint32_t)n;
        vals[0].hi = 0;
        return NULL;
    }
    if (!PyLong_Check(result)) {
        PyErr_Format(PyExc_TypeError, "host function returned %s, not int or bytes", Py_TYPE(result)->tp_name);
        Py_DECREF(result);
        return host_failed(h, HOST_RAISED, raised());
    }
    vals[0].lo = PyLong_AsUnsignedLongLongMask(result); /* two's complement for negatives */
    vals[0].hi = 0;
    Py_DECREF(result);
    if (PyErr_Occurred())
        return host_failed(h, HOST_RAISED, raised());
    return NULL;
}

/* wasmtime_func_unchecked_callback_t. Runs on the guest's thread, which may hold the GIL (the
   first tick of a call) or have given it up (on_deadline): PyGILState_Ensure covers both. */
static void *host_trampoline(void *env, void *caller, val_raw *vals, size_t n) {
    HostFunc *h = (HostFunc *)env;
    PyGILState_STATE gil = PyGILState_Ensure();
    void *trap = NULL;
    if (h->fast == NULL || !aead_fast(h, vals, &trap))
        trap = host_call(h, vals);
    /* A host call that returns past the call's deadline ends it here (TIMEOUT), rather than
       at guest code's next epoch check. Its effect, if it had one, stands: a timeout's outcome
       is unknown to the caller, as a lost reply's is. */
    if (trap == NULL && h->site != NULL && past_deadline(h->site)) {
        h->site->timed_out = 1;
        trap = host_trap(h, TIMED_OUT_MESSAGE);
    }
    PyGILState_Release(gil);
    return trap;
}

/* Holds no Python reference, so it needs no GIL: wasmtime may run it from any thread. */
static void host_finalize(void *env) {
    free(((HostFunc *)env)->fast);
    free(env);
}

/* define_host(define_unchecked, trap_new, linker, module, name, functype, method, on_error,
   nparams, has_result) -> (error_address, host_address)
   Defines an import whose calls run `method` through host_trampoline. On error (address
   nonzero, for Python to decode) nothing is kept; else host_address is for bind_host, and the
   caller keeps `method` and `on_error` alive (see HostFunc). */
static PyObject *define_host(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10 || !PyBytes_Check(args[3]) || !PyBytes_Check(args[4]) || !PyCallable_Check(args[6]) ||
        !PyCallable_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "define_host(define_unchecked, trap_new, linker, module: bytes, name: bytes, "
                                         "functype, method, on_error, nparams, has_result)");
        return NULL;
    }
    void *define, *trap_new, *linker, *ty;
    if ((define = address_of(args[0], "define_unchecked")) == NULL ||
        (trap_new = address_of(args[1], "trap_new")) == NULL || (linker = address_of(args[2], "linker")) == NULL ||
        (ty = address_of(args[5], "functype")) == NULL)
        return NULL;
    long nparams = PyLong_AsLong(args[8]);
    if (PyErr_Occurred())
        return NULL;
    int has_result = PyObject_IsTrue(args[9]);
    if (has_result < 0)
        return NULL;
    if (nparams < 0 || nparams > HOST_PARAMS_MAX) {
        PyErr_Format(PyExc_ValueError, "define_host: %ld parameters, not 0 to %d", nparams, HOST_PARAMS_MAX);
        return NULL;
    }
    HostFunc *h = calloc(1, sizeof(HostFunc));
    if (h == NULL)
        return PyErr_NoMemory();
    *h = (HostFunc){args[6], args[7], NULL, (trap_new_fn)trap_new, (int)nparams, has_result, NULL};
    void *error = ((define_unchecked_fn)define)(linker, PyBytes_AS_STRING(args[3]), (size_t)PyBytes_GET_SIZE(args[3]),
                                                PyBytes_AS_STRING(args[4]), (size_t)PyBytes_GET_SIZE(args[4]), ty,
                                                (void *)host_trampoline, h, host_finalize);
    if (error != NULL) { /* wasmtime dropped the callback, and so ran host_finalize, when it did not keep it */
        return Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)error, 0ULL);
    }
    return Py_BuildValue("(KK)", 0ULL, (unsigned long long)(uintptr_t)h);
}

/* bind_host(host_address, site): calls from now on copy results in through this site. */
static PyObject *bind_host(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bind_host(host, site)");
        return NULL;
    }
    HostFunc *h = (HostFunc *)address_of(args[0], "host function");
    if (h == NULL)
        return NULL;
    CallSite *site = site_of(args[1]);
    if (site == NULL)
        return NULL;
    h->site = site;
    Py_RETURN_NONE;
}

/* The epoch ticker: a thread of its own that never takes the GIL, so the epoch advances (and
   deadlines fire) even while guest code holds the GIL. It holds an engine reference of its own
   (wasmtime_engine_clone), dropped after the join: a program that exits without stopping it
   frees its Python Engine first, and the thread must not tick a freed engine meanwhile. */
typedef struct {
    pthread_t thread;
    increment_epoch_fn increment;
    engine_delete_fn engine_delete;
    void *engine; /* our own reference */
    long period_ns;
    int stop; /* read and written with __atomic builtins */
    uint64_t ticks; /* how many times it ticked: call sites read it (CallSite.now) */
} Ticker;

static void add_ns(struct timespec *at, long ns) {
    at->tv_nsec += ns;
    at->tv_sec += at->tv_nsec / 1000000000L;
    at->tv_nsec %= 1000000000L;
}

/* Sleeps to absolute times: a signal that interrupts a sleep (EINTR) resumes the same sleep
   instead of ticking early, which would shorten every running call's timeout. A ticker that
   fell behind (a stalled machine) skips the missed ticks rather than firing them in a burst. */
static void *tick(void *arg) {
    Ticker *t = (Ticker *)arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
        add_ns(&next, t->period_ns);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
        /* The count first: when wasmtime sees the new epoch, the count already says so. */
        __atomic_add_fetch(&t->ticks, 1, __ATOMIC_RELAXED);
        t->increment(t->engine);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1)
            next = now;
    }
    return NULL;
}

/* ticker_start(increment_epoch, engine_clone, engine_delete, engine, period_ns)
   -> (ticker, address of its tick count) */
static PyObject *ticker_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "ticker_start(increment_epoch, engine_clone, engine_delete, engine, period_ns)");
        return NULL;
    }
    static const char *const names[4] = {"increment_epoch", "engine_clone", "engine_delete", "engine"};
    void *fns[4];
    for (int i = 0; i < 4; i++)
        if ((fns[i] = address_of(args[i], names[i])) == NULL)
            return NULL;
    long period_ns = PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (period_ns <= 0) {
        PyErr_SetString(PyExc_ValueError, "ticker_start: a period <= 0");
        return NULL;
    }
    Ticker *t = calloc(1, sizeof(Ticker));
    if (t == NULL)
        return PyErr_NoMemory();
    t->increment = (increment_epoch_fn)fns[0];
    t->engine_delete = (engine_delete_fn)fns[2];
    t->engine = ((engine_clone_fn)fns[1])(fns[3]);
    t->period_ns = period_ns;
    int rc = pthread_create(&t->thread, NULL, tick, t);
    if (rc != 0) {
        t->engine_delete(t->engine);
        free(t);
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* Named, so top, gdb and the tests can tell the tickers from other threads. */
    pthread_setname_np(t->thread, "aspen-ticker");
    return Py_BuildValue("(NK)", PyLong_FromVoidPtr(t), (unsigned long long)(uintptr_t)&t->ticks);
}

/* ticker_stop(ticker): stop and join it (once). Its memory stays: call sites read its tick
   count (a stopped ticker's count stands still, and so do their deadlines, as the engine's
   epoch does); ticker_free releases it once nothing can. */
static PyObject *ticker_stop(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "ticker_stop(ticker)");
        return NULL;
    }
    Ticker *t = (Ticker *)address_of(args[0], "ticker");
    if (t == NULL)
        return NULL;
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_join(t->thread, NULL);
    Py_END_ALLOW_THREADS
    if (rc != 0) { /* the thread may still run: leave it its memory and engine */
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    t->engine_delete(t->engine);
    t->engine = NULL;
    Py_RETURN_NONE;
}

/* ticker_free(ticker): release a ticker that ticker_stop joined. */
static PyObject *ticker_free(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "ticker_free(ticker)");
        return NULL;
    }
    Ticker *t = (Ticker *)address_of(args[0], "ticker");
    if (t == NULL)
        return NULL;
    free(t);
    Py_RETURN_NONE;
}

/* charge_fuel(get_fuel, set_fuel, context, fuel) -> (error_address, had_enough)
   Take `fuel` from the running call (all it has left, when that is less): what a host function
   charges for work it does for the guest. One C call where two ctypes calls and their argument
   cells were half a microsecond each. error_address is a wasmtime error for Python to decode,
   or 0. */
static PyObject *charge_fuel(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "charge_fuel(get_fuel, set_fuel, context, fuel)");
        return NULL;
    }
    get_fuel_fn get = (get_fuel_fn)address_of(args[0], "get_fuel");
    if (get == NULL)
        return NULL;
    set_fuel_fn set = (set_fuel_fn)address_of(args[1], "set_fuel");
    if (set == NULL)
        return NULL;
    void *ctx = address_of(args[2], "context");
    if (ctx == NULL)
        return NULL;
    unsigned long long fuel = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    uint64_t left = 0;
    void *error = get(ctx, &left);
    if (error == NULL)
        error = set(ctx, left >= fuel ? left - fuel : 0);
    return Py_BuildValue("(KO)", (unsigned long long)(uintptr_t)error, error == NULL && left >= fuel ? Py_True : Py_False);
}

/* XChaCha20-Poly1305 for the crypto and barrier host functions (sandbox/crypto.py): libsodium's
   own functions, at the addresses PyNaCl's cffi module gives, called with the GIL held. Through
   cffi every call released and retook the GIL; on a busy node the event loop or the Raft thread
   took it meanwhile, and the plugin's worker waited for it back, once per seal or open (the
   nonce's os.urandom did the same). The output is made in one bytes object, with no copies
   around the call. Inputs past AEAD_NOGIL_BYTES release the GIL: their time is in the cipher,
   and a hand-off is cheap next to it. */
typedef int (*aead_encrypt_fn)(unsigned char *c, unsigned long long *clen, const unsigned char *m,
                               unsigned long long mlen, const unsigned char *ad, unsigned long long adlen,
                               const unsigned char *nsec, const unsigned char *npub, const unsigned char *k);
typedef int (*aead_decrypt_fn)(unsigned char *m, unsigned long long *mlen, unsigned char *nsec,
                               const unsigned char *c, unsigned long long clen, const unsigned char *ad,
                               unsigned long long adlen, const unsigned char *npub, const unsigned char *k);

enum { XCHACHA_KEY = 32, XCHACHA_NONCE = 24, XCHACHA_TAG = 16, AEAD_NOGIL_BYTES = 64 * 1024 };

/* Fill buf from the kernel's CSPRNG (what os.urandom reads), holding the GIL: 0, or -1 with
   OSError set. */
static int random_fill(unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t got = getrandom(buf, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        buf += got;
        n -= (size_t)got;
    }
    return 0;
}

static int check_key(PyObject *key) {
    if (PyBytes_GET_SIZE(key) != XCHACHA_KEY) {
        PyErr_Format(PyExc_ValueError, "an XChaCha20-Poly1305 key is %d bytes, not %zd", XCHACHA_KEY,
                     PyBytes_GET_SIZE(key));
        return -1;
    }
    return 0;
}

/* xchacha_seal(encrypt, key, plaintext, aad, nonce | None) -> nonce || ciphertext || tag;
   `encrypt` is crypto_aead_xchacha20poly1305_ietf_encrypt's address; None: a random nonce. */
static PyObject *xchacha_seal(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) || !PyBytes_Check(args[3]) ||
        (args[4] != Py_None && !PyBytes_Check(args[4]))) {
        PyErr_SetString(PyExc_TypeError, "xchacha_seal(encrypt, key: bytes, plaintext: bytes, aad: bytes, "
                                         "nonce: bytes | None)");
        return NULL;
    }
    aead_encrypt_fn encrypt = (aead_encrypt_fn)address_of(args[0], "encrypt");
    if (encrypt == NULL || check_key(args[1]) < 0)
        return NULL;
    if (args[4] != Py_None && PyBytes_GET_SIZE(args[4]) != XCHACHA_NONCE) {
        PyErr_Format(PyExc_ValueError, "an XChaCha20-Poly1305 nonce is %d bytes", XCHACHA_NONCE);
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[2]), ad_n = PyBytes_GET_SIZE(args[3]);
    if (n > PY_SSIZE_T_MAX - XCHACHA_NONCE - XCHACHA_TAG) {
        PyErr_SetString(PyExc_OverflowError, "xchacha_seal: plaintext too large");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, XCHACHA_NONCE + n + XCHACHA_TAG);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    if (args[4] == Py_None) {
        if (random_fill(o, XCHACHA_NONCE) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    } else {
        memcpy(o, PyBytes_AS_STRING(args[4]), XCHACHA_NONCE);
    }
    const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    const unsigned char *ad = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    unsigned long long c_n = 0;
    int rc;
    if (n + ad_n > AEAD_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = encrypt(o + XCHACHA_NONCE, &c_n, m, (unsigned long long)n, ad, (unsigned long long)ad_n, NULL, o, k);
        Py_END_ALLOW_THREADS
    } else {
        rc = encrypt(o + XCHACHA_NONCE, &c_n, m, (unsigned long long)n, ad, (unsigned long long)ad_n, NULL, o, k);
    }
    if (rc != 0 || c_n != (unsigned long long)n + XCHACHA_TAG) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "crypto_aead_xchacha20poly1305_ietf_encrypt failed");
        return NULL;
    }
    return out;
}

/* xchacha_open(decrypt, key, sealed, aad) -> the plaintext of nonce || ciphertext || tag, or None
   when it fails authentication (or is shorter than a nonce and a tag). */
static PyObject *xchacha_open(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "xchacha_open(decrypt, key: bytes, sealed: bytes, aad: bytes)");
        return NULL;
    }
    aead_decrypt_fn decrypt = (aead_decrypt_fn)address_of(args[0], "decrypt");
    if (decrypt == NULL || check_key(args[1]) < 0)
        return NULL;
    Py_ssize_t sealed_n = PyBytes_GET_SIZE(args[2]), ad_n = PyBytes_GET_SIZE(args[3]);
    if (sealed_n < XCHACHA_NONCE + XCHACHA_TAG)
        Py_RETURN_NONE;
    Py_ssize_t n = sealed_n - XCHACHA_NONCE - XCHACHA_TAG;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    const unsigned char *sealed = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    const unsigned char *ad = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    /* n == 0 gives the shared empty bytes: libsodium writes nothing into it then. */
    unsigned char *m = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned long long m_n = 0;
    int rc;
    if (sealed_n + ad_n > AEAD_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = decrypt(m, &m_n, NULL, sealed + XCHACHA_NONCE, (unsigned long long)(sealed_n - XCHACHA_NONCE), ad,
                     (unsigned long long)ad_n, sealed, k);
        Py_END_ALLOW_THREADS
    } else {
        rc = decrypt(m, &m_n, NULL, sealed + XCHACHA_NONCE, (unsigned long long)(sealed_n - XCHACHA_NONCE), ad,
                     (unsigned long long)ad_n, sealed, k);
    }
    if (rc != 0 || m_n != (unsigned long long)n) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

/* The AEAD host functions' answer in C (crypto_aead_seal and crypto_aead_open, ABI v3): for
   XChaCha20-Poly1305 with well-formed arguments, the same result bytes and the same fuel as the
   Python methods in sandbox/cryptofuncs.py, without them. The Python path read the arguments
   out, walked and decoded them into a dict, checked each, charged the fuel, sealed, and packed
   the result: ~3 us around a ~1.7 us seal of 1 KiB, on every transit request
   (benchmarks/README.md, "Measurements behind the code").

   Only the plain case is answered here; anything else falls through to the Python method,
   which then answers exactly as before: another algorithm, a bad or unknown or repeated
   argument, a short key or nonce, trailing bytes, input over the function's bound or over
   AEAD_NOGIL_BYTES (the Python path gives the GIL up for those), too little fuel (the method
   then charges and fails as it would have), a pointer outside memory. Nothing is charged or
   written before the fall-through is ruled out. Installed only for a plugin granted `crypto`
   (sandbox/runtime.py), so the permission check is the installing. */
enum { AEAD_SEAL = 1, AEAD_OPEN = 2, AEAD_ARGS_MAX = 5, AEAD_FAILED_MAX = 128 };

struct AeadFast {
    int op;
    void *cipher;           /* crypto_aead_xchacha20poly1305_ietf_encrypt, or _decrypt */
    uint64_t max_bytes;     /* the arguments' bound (CRYPTO_MAX_BYTES) */
    uint64_t fuel_base, fuel_per_byte;
    size_t failed_n;        /* the error result for a failed open, as the Python method packs it */
    unsigned char failed[AEAD_FAILED_MAX];
};

typedef struct {
    const uint8_t *p;
    uint32_t n;
    int present;
} Arg;

/* A msgpack str (want_bin 0) or bin (1) at b[*at], inside n bytes: 1 and its bytes, else 0. */
static int mp_bytes(const uint8_t *b, size_t n, size_t *at, int want_bin, Arg *out) {
    if (*at >= n)
        return 0;
    uint8_t t = b[(*at)++];
    size_t width;
    uint32_t len = 0;
    if (!want_bin && (t & 0xe0) == 0xa0) {
        width = 0;
        len = t & 0x1f;
    } else if (t == (want_bin ? 0xc4 : 0xd9)) {
        width = 1;
    } else if (t == (want_bin ? 0xc5 : 0xda)) {
        width = 2;
    } else if (t == (want_bin ? 0xc6 : 0xdb)) {
        width = 4;
    } else {
        return 0;
    }
    if (n - *at < width)
        return 0;
    for (size_t i = 0; i < width; i++)
        len = (len << 8) | b[(*at)++];
    if (n - *at < len)
        return 0;
    *out = (Arg){b + *at, len, 1};
    *at += len;
    return 1;
}

static int name_is(const Arg *a, const char *name) {
    size_t n = strlen(name);
    return a->n == n && memcmp(a->p, name, n) == 0;
}

/* 1: answered (vals[0] holds the result, or *trap is set); 0: the Python method answers. */
static int aead_fast(HostFunc *h, val_raw *vals, void **trap) {
    const AeadFast *f = h->fast;
    CallSite *site = h->site;
    int32_t ap = (int32_t)(uint32_t)vals[0].lo, al = (int32_t)(uint32_t)vals[1].lo;
    if (site == NULL || ap < 0 || al < 0 || (uint64_t)al > f->max_bytes)
        return 0;
    const uint8_t *base = site->memory_data(site->ctx, site->mem);
    size_t size = site->memory_size(site->ctx, site->mem);
    if (base == NULL || (uint64_t)ap + (uint64_t)al > size)
        return 0;
    const uint8_t *b = base + ap;
    size_t n = (size_t)al, at = 1;
    if (n == 0 || (b[0] & 0xf0) != 0x80 || (b[0] & 0x0f) > AEAD_ARGS_MAX)
        return 0;
    /* alg, key, data (plaintext or sealed), aad, nonce (seal only); a name given twice falls
       through (the method's dict keeps the last) */
    Arg alg = {0}, key = {0}, data = {0}, aad = {0}, nonce = {0};
    int nonce_seen = 0;
    const char *data_name = f->op == AEAD_SEAL ? "plaintext" : "sealed";
    for (int i = 0, count = b[0] & 0x0f; i < count; i++) {
        Arg name;
        if (!mp_bytes(b, n, &at, 0, &name))
            return 0;
        Arg *slot;
        int want_bin = 1;
        if (name_is(&name, "alg")) {
            slot = &alg;
            want_bin = 0;
        } else if (name_is(&name, "key")) {
            slot = &key;
        } else if (name_is(&name, data_name)) {
            slot = &data;
        } else if (name_is(&name, "aad")) {
            slot = &aad;
        } else if (f->op == AEAD_SEAL && name_is(&name, "nonce")) {
            if (nonce_seen)
                return 0;
            nonce_seen = 1;
            if (at < n && b[at] == 0xc0) { /* nil: a random nonce, as when absent */
                at++;
                continue;
            }
            slot = &nonce;
        } else {
            return 0;
        }
        if (slot->present || !mp_bytes(b, n, &at, want_bin, slot))
            return 0;
    }
    if (at != n || !alg.present || !name_is(&alg, "xchacha20-poly1305") || !key.present || key.n != XCHACHA_KEY ||
        !data.present || (nonce.present && nonce.n != XCHACHA_NONCE))
        return 0;
    if (f->op == AEAD_OPEN && data.n < XCHACHA_NONCE + XCHACHA_TAG)
        return 0;
    if ((uint64_t)data.n + aad.n > AEAD_NOGIL_BYTES)
        return 0;
    uint64_t fuel = f->fuel_base + f->fuel_per_byte * ((uint64_t)data.n + aad.n), left = 0;
    void *error = site->get_fuel(site->ctx, &left);
    if (error != NULL) {
        site->error_delete(error);
        return 0;
    }
    if (left < fuel)
        return 0;
    /* Past here this call answers: the fuel is taken, the result is the one the Python method
       would give. The result is made in host memory from the guest's bytes, then copied in
       through the guest's allocator, which may write anywhere in the guest's memory. */
    error = site->set_fuel(site->ctx, left - fuel);
    if (error != NULL) {
        site->error_delete(error);
        return 0; /* nothing taken: the method tries, and fails, the same way */
    }
    size_t body = f->op == AEAD_SEAL ? (size_t)data.n + XCHACHA_NONCE + XCHACHA_TAG
                                     : (size_t)data.n - XCHACHA_NONCE - XCHACHA_TAG;
    size_t head = body < 0x100 ? 4 : body < 0x10000 ? 5 : 7; /* [0, bin]: 0x92 0x00, bin8/16/32 */
    unsigned char *out = malloc(head + body);
    if (out == NULL) {
        PyErr_NoMemory();
        *trap = host_failed(h, HOST_RAISED, raised());
        return 1;
    }
    out[0] = 0x92;
    out[1] = 0x00;
    out[2] = head == 4 ? 0xc4 : head == 5 ? 0xc5 : 0xc6;
    for (size_t i = 3; i < head; i++) /* the length, big-endian, in head - 3 bytes */
        out[i] = (unsigned char)(body >> (8 * (head - 1 - i)));
    const unsigned char *result = out;
    size_t result_n = head + body;
    unsigned long long done_n = 0;
    if (f->op == AEAD_SEAL) {
        unsigned char *o = out + head;
        if (nonce.present) {
            memcpy(o, nonce.p, XCHACHA_NONCE);
        } else if (random_fill(o, XCHACHA_NONCE) < 0) {
            free(out);
            *trap = host_failed(h, HOST_RAISED, raised());
            return 1;
        }
        int rc = ((aead_encrypt_fn)f->cipher)(o + XCHACHA_NONCE, &done_n, data.p, data.n, aad.p, aad.n, NULL, o,
                                               key.p);
        if (rc != 0 || done_n != (unsigned long long)data.n + XCHACHA_TAG) {
            free(out);
            PyErr_SetString(PyExc_RuntimeError, "crypto_aead_xchacha20poly1305_ietf_encrypt failed");
            *trap = host_failed(h, HOST_RAISED, raised());
            return 1;
        }
    } else {
        int rc = ((aead_decrypt_fn)f->cipher)(out + head, &done_n, NULL, data.p + XCHACHA_NONCE,
                                               data.n - XCHACHA_NONCE, aad.p, aad.n, data.p, key.p);
        if (rc != 0 || done_n != body) { /* forged, truncated, another key or aad: one answer */
            result = f->failed;
            result_n = f->failed_n;
        }
    }
    uint32_t ptr = 0;
    Outcome o = {0};
    int copied = copy_in(site, (const char *)result, (Py_ssize_t)result_n, &ptr, &o);
    free(out);
    if (!copied) {
        *trap = copy_in_failed(h, &o);
        return 1;
    }
    vals[0].lo = ((uint64_t)ptr << 32) | (uint64_t)(uint32_t)result_n;
    vals[0].hi = 0;
    return 1;
}

/* serve_aead(host, op, cipher, max_bytes, fuel_base, fuel_per_byte, failed: bytes): host
   function `host` (define_host's address, before bind_host) answers in C what aead_fast can;
   op 1 is crypto_aead_seal with the encrypt function at `cipher`, 2 crypto_aead_open with the
   decrypt one. `failed` is the result for a ciphertext that fails authentication. */
static PyObject *serve_aead(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "serve_aead(host, op, cipher, max_bytes, fuel_base, fuel_per_byte, failed: bytes)");
        return NULL;
    }
    HostFunc *h = (HostFunc *)address_of(args[0], "host function");
    void *cipher = h == NULL ? NULL : address_of(args[2], "cipher");
    if (cipher == NULL)
        return NULL;
    long op = PyLong_AsLong(args[1]);
    if (op == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long limits[3];
    for (int i = 0; i < 3; i++) /* max_bytes, fuel_base, fuel_per_byte */
        if ((limits[i] = PyLong_AsUnsignedLongLong(args[3 + i])) == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
    unsigned long long max_bytes = limits[0], fuel_base = limits[1], fuel_per_byte = limits[2];
    Py_ssize_t failed_n = PyBytes_GET_SIZE(args[6]);
    if ((op != AEAD_SEAL && op != AEAD_OPEN) || failed_n > AEAD_FAILED_MAX || h->nparams != 2 || !h->has_result ||
        h->site != NULL || h->fast != NULL || max_bytes > UINT32_MAX || fuel_per_byte > UINT32_MAX ||
        fuel_base > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "serve_aead: not an unbound (ptr, len) -> i64 host function, or bad bounds");
        return NULL;
    }
    AeadFast *f = calloc(1, sizeof(AeadFast));
    if (f == NULL)
        return PyErr_NoMemory();
    *f = (AeadFast){(int)op, cipher, max_bytes, fuel_base, fuel_per_byte, (size_t)failed_n, {0}};
    memcpy(f->failed, PyBytes_AS_STRING(args[6]), (size_t)failed_n);
    h->fast = f;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"call", (PyCFunction)(void (*)(void))guest_call, METH_FASTCALL, "One plugin call: fuel, deadline, input, export, output."},
    {"watch", (PyCFunction)(void (*)(void))guest_watch, METH_FASTCALL, "Route a store's epoch deadlines here."},
    {"decode_bound", (PyCFunction)(void (*)(void))decode_bound, METH_FASTCALL, "Why guest msgpack may not be decoded, or None."},
    {"define_host", (PyCFunction)(void (*)(void))define_host, METH_FASTCALL, "Define an import served by a Python method."},
    {"bind_host", (PyCFunction)(void (*)(void))bind_host, METH_FASTCALL, "Give a host function its call site."},
    {"ticker_start", (PyCFunction)(void (*)(void))ticker_start, METH_FASTCALL, "Start a GIL-free epoch ticker."},
    {"ticker_stop", (PyCFunction)(void (*)(void))ticker_stop, METH_FASTCALL, "Stop and join an epoch ticker."},
    {"ticker_free", (PyCFunction)(void (*)(void))ticker_free, METH_FASTCALL, "Release a joined epoch ticker."},
    {"charge_fuel", (PyCFunction)(void (*)(void))charge_fuel, METH_FASTCALL, "Take fuel from the running call."},
    {"xchacha_seal", (PyCFunction)(void (*)(void))xchacha_seal, METH_FASTCALL, "libsodium's XChaCha20-Poly1305 seal."},
    {"xchacha_open", (PyCFunction)(void (*)(void))xchacha_open, METH_FASTCALL, "libsodium's XChaCha20-Poly1305 open."},
    {"serve_aead", (PyCFunction)(void (*)(void))serve_aead, METH_FASTCALL, "Answer an AEAD host function in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_guestcall", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__guestcall(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "SITE_BYTES", (long)sizeof(CallSite)) < 0 ||
        PyModule_AddIntConstant(m, "OK", OK) < 0 || PyModule_AddIntConstant(m, "TRAPPED", TRAPPED) < 0 ||
        PyModule_AddIntConstant(m, "FAULT", FAULT) < 0 || PyModule_AddIntConstant(m, "TIMED_OUT", TIMED_OUT) < 0 ||
        PyModule_AddIntConstant(m, "INVALID_OUTPUT", INVALID_OUTPUT) < 0 ||
        PyModule_AddIntConstant(m, "HOST_RAISED", HOST_RAISED) < 0 ||
        PyModule_AddIntConstant(m, "HOST_TRAPPED", HOST_TRAPPED) < 0 ||
        PyModule_AddIntConstant(m, "HOST_FAULT", HOST_FAULT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
