/* The agent's packet engine: frames in, NSL-KDD rows out, in native code.
 *
 * Per frame: decode the link, IP and transport headers (no copies), track the connection in a
 * hash table whose entries sit on four LRU lists (TCP attempts, established, closing; datagram
 * conversations), account bytes, flags and IP fragment faults. Per ended connection: the basic,
 * time-window (2 s) and host-window (255 connections) features, in desy.records.ROW_FIELDS order.
 * What Python knows stays in Python and is asked once per value (service names, content dialects,
 * protocol names, error flags) or per inspected connection (the content features' regexes).
 * The rules are those of docs/features.md; every branch mirrors the reference engine kept in
 * tests/agent/oracle, which the differential tests compare bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define TCP 6
#define UDP 17
#define ICMP 1
#define ICMPV6 58
#define NO_NEXT_HEADER 59
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define ACK 0x10
#define URG 0x20
#define O_SYN 1
#define R_SYNACK 2
#define O_FIN 4
#define R_FIN 8
#define O_RST 16
#define R_RST 32
#define MAX_SERVICES 256
#define MASK32 0xFFFFFFFFu

/* ------------------------------------------------------------------ keys and hashing */

typedef struct {
    uint8_t len;
    uint8_t b[16];
} Addr;

/* No implicit padding: keys are copied, hashed and compared as their 48 bytes. */
typedef struct {
    Addr a, b;
    uint8_t zero[2];
    uint32_t ipid;
    uint16_t pa, pb;
    uint8_t proto, kind; /* kind 5: (a, pa, b, pb, proto); kind 4: (a, b, proto, ipid) */
    uint8_t zero2[2];
} Key;
_Static_assert(sizeof(Key) == 48, "Key must have no implicit padding");

static uint64_t hash_seed;
/* The 101 rates k/100 every window feature takes, made once, and their text as repr() writes it. */
static PyObject *RATES[101];
static char RATE_TEXT[101][8];
static Py_ssize_t RATE_LEN[101];

static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 33);
}

static inline uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n) {
    uint64_t v;
    while (n >= 8) {
        memcpy(&v, p, 8);
        h = mix(h, v);
        p += 8;
        n -= 8;
    }
    v = 0;
    memcpy(&v, p, n);
    return mix(h, v ^ ((uint64_t)n << 56));
}

static inline uint64_t hash_addr(const Addr *a) { return hash_bytes(hash_seed, a->b, 16) ^ a->len; }

static inline int addr_eq(const Addr *x, const Addr *y) {
    return x->len == y->len && memcmp(x->b, y->b, 16) == 0;
}

static inline int key_eq(const Key *x, const Key *y) { return memcmp(x, y, sizeof(Key)) == 0; }

/* The key of both directions: endpoints in a fixed order (kind 5 only: a kind-4 key has one
 * direction). Connections are unique by it within a namespace (see Table). */
static void canonical(const Key *k, Key *out) {
    *out = *k;
    if (k->kind != 5) return;
    int c = memcmp(&k->a, &k->b, sizeof(Addr));
    if (c > 0 || (c == 0 && k->pa > k->pb)) {
        out->a = k->b;
        out->b = k->a;
        out->pa = k->pb;
        out->pb = k->pa;
    }
}

static inline uint64_t hash_key(const Key *canon, int ns) {
    return hash_bytes(hash_seed ^ (uint64_t)ns, (const uint8_t *)canon, sizeof(Key));
}

static inline void reverse(const Key *k, Key *out) {
    *out = *k;
    if (k->kind == 5) {
        out->a = k->b;
        out->b = k->a;
        out->pa = k->pb;
        out->pb = k->pa;
    }
}

/* ------------------------------------------------------------------ packets */

typedef struct {
    double ts;
    Addr src, dst;
    const uint8_t *payload;
    Py_ssize_t payload_len;
    int64_t ip_payload_len;
    uint32_t seq, ip_id;
    int32_t frag_offset;
    int icmp_type, icmp_code;
    uint16_t sport, dport;
    uint8_t version, proto, flags, more_fragments;
} Packet;

static inline int is_fragment(const Packet *p) { return p->more_fragments || p->frag_offset > 0; }

enum {
    R_ETH, R_VLAN, R_SLL, R_SLL2, R_LOOP, R_RAW_EMPTY, R_V4_SHORT, R_V4_VERSION, R_V4_LENGTH,
    R_V6_SHORT, R_V6_VERSION, R_V6_EXT_SHORT, R_V6_EXT_PAST, R_TCP_SHORT, R_TCP_OFFSET, R_UDP_SHORT,
    R_ICMP_SHORT, R_LINKTYPE, N_REASONS
};
static const char *REASONS[N_REASONS] = {
    "truncated ethernet header", "truncated 802.1Q tag", "truncated SLL header",
    "truncated SLL2 header", "truncated loopback header", "empty raw IP frame",
    "truncated IPv4 header", "bad IPv4 version or header length", "bad IPv4 total length",
    "truncated IPv6 header", "bad IPv6 version", "truncated IPv6 extension header",
    "IPv6 extension headers past the end of the packet", "truncated TCP header",
    "bad TCP data offset", "truncated UDP header", "truncated ICMP header",
    NULL /* unsupported link type N: made with N */
};

#define MALFORMED(r) (-1 - (r))
#define NOT_IP 0
#define IS_IP 1

static inline unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the network header and its ethertype, or MALFORMED(reason). */
static int link_layer(const uint8_t *f, Py_ssize_t n, int linktype, unsigned *ethertype) {
    switch (linktype) {
    case 1: {
        if (n < 14) return MALFORMED(R_ETH);
        unsigned et = be16(f + 12);
        Py_ssize_t off = 14;
        while (et == 0x8100 || et == 0x88A8 || et == 0x9100) {
            if (n < off + 4) return MALFORMED(R_VLAN);
            et = be16(f + off + 2);
            off += 4;
        }
        *ethertype = et;
        return (int)off;
    }
    case 113:
        if (n < 16) return MALFORMED(R_SLL);
        *ethertype = be16(f + 14);
        return 16;
    case 276:
        if (n < 20) return MALFORMED(R_SLL2);
        *ethertype = be16(f);
        return 20;
    case 0:
    case 108: {
        if (n < 4) return MALFORMED(R_LOOP);
        uint32_t family = (uint32_t)f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 |
                          (uint32_t)f[3] << 24;
        if (family > 0xFFFF) family = be32(f);
        *ethertype = family == 2 ? 0x0800
                     : (family == 10 || family == 24 || family == 28 || family == 30) ? 0x86DD
                                                                                      : 0;
        return 4;
    }
    case 101:
    case 12:
    case 228:
    case 229:
        if (n < 1) return MALFORMED(R_RAW_EMPTY);
        *ethertype = (f[0] >> 4) == 4 ? 0x0800 : (f[0] >> 4) == 6 ? 0x86DD : 0;
        return 0;
    default:
        return MALFORMED(R_LINKTYPE);
    }
}

/* Ports, TCP flags, ICMP type and payload (only in a datagram's first fragment). */
static int transport(Packet *p, const uint8_t *f, Py_ssize_t pos, Py_ssize_t end) {
    if (p->frag_offset) {
        p->payload = f + pos;
        p->payload_len = end - pos;
        return IS_IP;
    }
    switch (p->proto) {
    case TCP: {
        if (end < pos + 20) return MALFORMED(R_TCP_SHORT);
        p->sport = be16(f + pos);
        p->dport = be16(f + pos + 2);
        p->seq = be32(f + pos + 4);
        Py_ssize_t data_offset = (f[pos + 12] >> 4) * 4;
        if (data_offset < 20 || pos + data_offset > end) return MALFORMED(R_TCP_OFFSET);
        p->flags = f[pos + 13];
        p->payload = f + pos + data_offset;
        p->payload_len = end - pos - data_offset;
        return IS_IP;
    }
    case UDP:
        if (end < pos + 8) return MALFORMED(R_UDP_SHORT);
        p->sport = be16(f + pos);
        p->dport = be16(f + pos + 2);
        p->payload = f + pos + 8;
        p->payload_len = end - pos - 8;
        return IS_IP;
    case ICMP:
    case ICMPV6:
        if (end < pos + 4) return MALFORMED(R_ICMP_SHORT);
        p->icmp_type = f[pos];
        p->icmp_code = f[pos + 1];
        p->payload = f + pos; /* NSL-KDD counts the whole ICMP message */
        p->payload_len = end - pos;
        return IS_IP;
    case NO_NEXT_HEADER:
        return IS_IP;
    default:
        p->payload = f + pos;
        p->payload_len = end - pos;
        return IS_IP;
    }
}

static int ipv4(Packet *p, const uint8_t *f, Py_ssize_t n, Py_ssize_t off) {
    if (n < off + 20) return MALFORMED(R_V4_SHORT);
    unsigned ver_ihl = f[off], total_len = be16(f + off + 2), frag = be16(f + off + 6);
    Py_ssize_t ihl = (ver_ihl & 0x0F) * 4;
    if (ver_ihl >> 4 != 4 || ihl < 20) return MALFORMED(R_V4_VERSION);
    if ((Py_ssize_t)total_len < ihl || n < off + ihl) return MALFORMED(R_V4_LENGTH);
    Py_ssize_t end = n < off + (Py_ssize_t)total_len ? n : off + (Py_ssize_t)total_len;
    p->version = 4;
    p->proto = f[off + 9];
    p->ip_id = be16(f + off + 4);
    p->src.len = p->dst.len = 4;
    memcpy(p->src.b, f + off + 12, 4);
    memcpy(p->dst.b, f + off + 16, 4);
    p->frag_offset = (frag & 0x1FFF) * 8;
    p->more_fragments = (frag & 0x2000) != 0;
    p->ip_payload_len = (int64_t)total_len - ihl;
    return transport(p, f, off + ihl, end);
}

static inline int v6_extension(unsigned h) {
    return h == 0 || h == 43 || h == 60 || h == 51 || h == 135 || h == 139 || h == 140;
}

static int ipv6(Packet *p, const uint8_t *f, Py_ssize_t n, Py_ssize_t off) {
    if (n < off + 40) return MALFORMED(R_V6_SHORT);
    if (f[off] >> 4 != 6) return MALFORMED(R_V6_VERSION);
    unsigned payload_len = be16(f + off + 4), next = f[off + 6];
    p->version = 6;
    p->src.len = p->dst.len = 16;
    memcpy(p->src.b, f + off + 8, 16);
    memcpy(p->dst.b, f + off + 24, 16);
    Py_ssize_t pos = off + 40;
    Py_ssize_t end = n < off + 40 + (Py_ssize_t)payload_len ? n : off + 40 + (Py_ssize_t)payload_len;
    p->ip_payload_len = payload_len;
    while (v6_extension(next) || next == 44) {
        if (end < pos + 8) return MALFORMED(R_V6_EXT_SHORT);
        Py_ssize_t length;
        if (next == 44) {
            unsigned frag = be16(f + pos + 2);
            p->frag_offset = frag & 0xFFF8;
            p->more_fragments = frag & 1;
            p->ip_id = be32(f + pos + 4);
            length = 8;
        } else if (next == 51) {
            length = (f[pos + 1] + 2) * 4;
        } else {
            length = (f[pos + 1] + 1) * 8;
        }
        next = f[pos];
        pos += length;
    }
    p->proto = next;
    if (!is_fragment(p)) p->ip_payload_len = end - pos > 0 ? end - pos : 0;
    if (pos > end) return MALFORMED(R_V6_EXT_PAST);
    return transport(p, f, pos, end);
}

static int decode(Packet *p, const uint8_t *f, Py_ssize_t n, int linktype) {
    memset(p, 0, sizeof(*p));
    p->icmp_type = p->icmp_code = -1;
    p->payload = f;
    unsigned ethertype = 0;
    int off = link_layer(f, n, linktype, &ethertype);
    if (off < 0) return off;
    if (ethertype == 0x0800) return ipv4(p, f, n, off);
    if (ethertype == 0x86DD) return ipv6(p, f, n, off);
    return NOT_IP;
}

/* ------------------------------------------------------------------ connections */

enum { CLOSING, ATTEMPTS, ACTIVE, DATAGRAMS, N_TABLES };

/* Structs kept in a Map begin with (next in chain, hash), as HNode. */
typedef struct Conn {
    struct Conn *hnext;
    uint64_t hash;
    struct Conn *prev, *next;
    Key key; /* the connection's own (ordered) key */
    Addr orig, resp;
    double start, last;
    int64_t orig_bytes, resp_bytes, urgent, wrong_fragment;
    int64_t seq_base[2], seq_top[2]; /* -1: none yet */
    uint8_t *data[2];
    Py_ssize_t data_len[2];
    int icmp_type, icmp_code;
    uint16_t orig_port, resp_port;
    uint8_t table, proto, history, inspected;
    PyObject *dialect; /* borrowed (held by the engine's dialect table), or NULL */
} Conn;

typedef struct {
    Conn *head, *tail;
    Py_ssize_t n;
} List;

static void list_push(List *l, Conn *c) {
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail) l->tail->next = c;
    else l->head = c;
    l->tail = c;
    l->n++;
}

static void list_unlink(List *l, Conn *c) {
    if (c->prev) c->prev->next = c->next;
    else l->head = c->next;
    if (c->next) c->next->prev = c->prev;
    else l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

/* ------------------------------------------------------------------ fragments */

typedef struct Datagram {
    struct Datagram *hnext;
    uint64_t hash;
    struct Datagram *prev, *next;
    Key id; /* kind 4: (src, dst, proto, ip id) */
    Key conn_key;
    int has_conn_key;
    double last_seen;
    int64_t top;
    int64_t *starts, *ends;
    Py_ssize_t n, cap;
} Datagram;

/* ------------------------------------------------------------------ windows */

typedef struct {
    double end;
    Addr host;
    uint16_t svc;
    uint8_t serror, rerror;
} TimeEntry;

typedef struct HostCount { /* time window: per destination host */
    struct HostCount *hnext;
    uint64_t hash;
    Addr host;
    int64_t n, serror, rerror, services;
} HostCount;

typedef struct PairCount { /* time window: connections of one (host, service) */
    struct PairCount *hnext;
    uint64_t hash;
    Addr host;
    uint16_t svc;
    int64_t n;
} PairCount;

typedef struct {
    uint16_t svc, port;
    uint8_t serror, rerror;
} HostEntry;

typedef struct HostRing { /* host window: the last connections to one host */
    struct HostRing *hnext;
    uint64_t hash;
    struct HostRing *prev, *next;
    Addr host;
    HostEntry *ring;
    int n, cap, oldest;
} HostRing;

typedef struct {
    Addr host;
    uint16_t port;
    uint8_t serror, rerror;
} SrvEntry;

typedef struct {
    SrvEntry *ring;
    int n, oldest;
} SrvRing;

typedef struct {
    int64_t n, serror, rerror;
} SrvCount;

/* A chained hash map of structs that begin with (next pointer, hash). */
typedef struct HNode {
    struct HNode *hnext;
    uint64_t hash;
} HNode;

typedef struct {
    HNode **buckets;
    size_t mask, n;
} Map;

static int map_init(Map *m, size_t size) {
    m->buckets = PyMem_Calloc(size, sizeof(HNode *));
    m->mask = size - 1;
    m->n = 0;
    return m->buckets ? 0 : -1;
}

static int map_grow(Map *m) {
    size_t size = (m->mask + 1) * 2;
    HNode **buckets = PyMem_Calloc(size, sizeof(HNode *));
    if (!buckets) return -1;
    for (size_t i = 0; i <= m->mask; i++) {
        HNode *node = m->buckets[i];
        while (node) {
            HNode *next = node->hnext;
            size_t j = node->hash & (size - 1);
            node->hnext = buckets[j];
            buckets[j] = node;
            node = next;
        }
    }
    PyMem_Free(m->buckets);
    m->buckets = buckets;
    m->mask = size - 1;
    return 0;
}

static int map_insert(Map *m, HNode *node) {
    if (m->n >= m->mask + 1 && map_grow(m) < 0) return -1;
    size_t i = node->hash & m->mask;
    node->hnext = m->buckets[i];
    m->buckets[i] = node;
    m->n++;
    return 0;
}

static void map_remove(Map *m, HNode *node) {
    HNode **at = &m->buckets[node->hash & m->mask];
    while (*at != node) at = &(*at)->hnext;
    *at = node->hnext;
    m->n--;
}

/* ------------------------------------------------------------------ the engine */

typedef struct {
    double tcp_attempt, tcp_established, tcp_closed, udp, icmp_fragments, sweep_interval;
} Timeouts;

typedef struct {
    PyObject_HEAD
    Timeouts t;
    Py_ssize_t max_connections, max_datagrams, max_spans, content_cap, max_hosts;
    int64_t payload_limit, payload_held, payload_refused, max_datagram;
    double time_window, next_sweep, latest;
    int host_cap, count_cap;
    /* counters */
    int64_t seen, parsed, malformed, not_ip, emitted, evicted, backwards;
    int64_t reasons[N_REASONS];
    PyObject *reason_order; /* list of reasons in order of first occurrence */
    PyObject *linktype_reasons; /* dict: unsupported link type -> count */
    /* tables */
    Map conns;
    List tables[N_TABLES];
    Map datagrams;
    Datagram *dg_head, *dg_tail;
    /* what Python knows */
    PyObject *service_fn, *content_fn, *proto_names, *serror_flags, *rerror_flags;
    PyObject *dialects[65536];
    PyObject **service_cache[4]; /* tcp, udp, icmp, icmpv6 */
    PyObject *other_service[256];
    PyObject *proto_name[256];
    PyObject *service_index; /* dict: name -> index */
    PyObject *services[MAX_SERVICES];
    int n_services;
    PyObject *flags[13];
    uint8_t flag_serror[13], flag_rerror[13];
    PyObject *no_content, *logged_in_only;
    /* time window */
    TimeEntry *recent;
    Py_ssize_t recent_head, recent_n, recent_cap;
    Map host_counts, pair_counts;
    SrvCount srv_counts[MAX_SERVICES];
    /* host window */
    Map host_rings;
    HostRing *hr_head, *hr_tail;
    SrvRing srv_rings[MAX_SERVICES];
    /* output of the call in progress */
    PyObject *out;
} Engine;

enum { F_OTH, F_SF, F_S0, F_S1, F_S2, F_S3, F_SH, F_SHR, F_REJ, F_RSTO, F_RSTR, F_RSTOS0, F_RSTRH };
static const char *FLAG_NAMES[13] = {"OTH", "SF", "S0", "S1", "S2", "S3", "SH",
                                     "SHR", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH"};

static int flag_of(const Conn *c) {
    if (c->proto != TCP) return F_SF;
    unsigned h = c->history;
    int o_syn = h & O_SYN, r_synack = h & R_SYNACK;
    int o_fin = h & O_FIN, r_fin = h & R_FIN, o_rst = h & O_RST, r_rst = h & R_RST;
    if (o_syn && r_synack) {
        if (o_rst) return F_RSTO;
        if (r_rst) return F_RSTR;
        if (o_fin && r_fin) return F_SF;
        if (o_fin) return F_S2;
        if (r_fin) return F_S3;
        return F_S1;
    }
    if (o_syn) {
        if (o_rst) return F_RSTOS0;
        if (r_rst) return F_REJ;
        if (o_fin) return F_SH;
        return F_S0;
    }
    if (r_synack) {
        if (r_rst) return F_RSTRH;
        if (r_fin) return F_SHR;
    }
    return F_OTH;
}

static inline int established(const Conn *c) {
    return (c->history & (O_SYN | R_SYNACK)) == (O_SYN | R_SYNACK);
}

static inline int finished(const Conn *c) {
    unsigned h = c->history;
    return (h & (O_RST | R_RST)) || (h & (O_FIN | R_FIN)) == (O_FIN | R_FIN);
}

/* The index of a service name in the windows, registering it on first sight. */
static int service_number(Engine *e, PyObject *name) {
    PyObject *index = PyDict_GetItemWithError(e->service_index, name);
    if (index) return (int)PyLong_AsLong(index);
    if (PyErr_Occurred()) return -1;
    if (e->n_services >= MAX_SERVICES) {
        PyErr_SetString(PyExc_OverflowError, "more distinct services than the engine can hold");
        return -1;
    }
    PyObject *number = PyLong_FromLong(e->n_services);
    if (!number || PyDict_SetItem(e->service_index, name, number) < 0) {
        Py_XDECREF(number);
        return -1;
    }
    Py_DECREF(number);
    Py_INCREF(name);
    e->services[e->n_services] = name;
    return e->n_services++;
}

/* The service of an ended connection (a borrowed name), from Python's rule, cached. */
static PyObject *service_of(Engine *e, const Conn *c) {
    PyObject **slot;
    int table = c->proto == TCP ? 0 : c->proto == UDP ? 1 : c->proto == ICMP ? 2
                : c->proto == ICMPV6 ? 3 : -1;
    if (table < 0) slot = &e->other_service[c->proto];
    else if (table < 2) slot = &e->service_cache[table][c->resp_port];
    else slot = &e->service_cache[table][(c->icmp_type + 1) * 257 + (c->icmp_code + 1)];
    if (*slot) return *slot;
    PyObject *name = PyObject_CallFunction(e->service_fn, "iiii", c->proto, c->resp_port,
                                           c->icmp_type, c->icmp_code);
    if (!name) return NULL;
    if (!PyUnicode_Check(name) || service_number(e, name) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "service() must return a str");
        Py_DECREF(name);
        return NULL;
    }
    *slot = name;
    return name;
}

/* protocol_names: the name of each IP protocol number, 256 of them. */
static PyObject *protocol_name(Engine *e, int proto) {
    if (!e->proto_name[proto]) {
        PyObject *name = PySequence_GetItem(e->proto_names, proto);
        if (!name) return NULL;
        e->proto_name[proto] = name;
    }
    return e->proto_name[proto];
}

static inline PyObject *rate(Engine *e, int64_t part, int64_t whole) {
    int k = (int)((double)(part * 100) / (double)whole + 0.5);
    Py_INCREF(RATES[k]);
    return RATES[k];
}

/* ---- time window */

static TimeEntry *recent_at(Engine *e, Py_ssize_t i) {
    return &e->recent[(e->recent_head + i) % e->recent_cap];
}

static int recent_push(Engine *e, const TimeEntry *entry) {
    if (e->recent_n == e->recent_cap) {
        Py_ssize_t cap = e->recent_cap ? e->recent_cap * 2 : 1024;
        TimeEntry *ring = PyMem_Malloc(cap * sizeof(TimeEntry));
        if (!ring) return -1;
        for (Py_ssize_t i = 0; i < e->recent_n; i++) ring[i] = *recent_at(e, i);
        PyMem_Free(e->recent);
        e->recent = ring;
        e->recent_cap = cap;
        e->recent_head = 0;
    }
    e->recent[(e->recent_head + e->recent_n) % e->recent_cap] = *entry;
    e->recent_n++;
    return 0;
}

static HostCount *host_count(Engine *e, const Addr *host, uint64_t h) {
    for (HNode *n = e->host_counts.buckets[h & e->host_counts.mask]; n; n = n->hnext) {
        HostCount *c = (HostCount *)n;
        if (c->hash == h && addr_eq(&c->host, host)) return c;
    }
    return NULL;
}

static PairCount *pair_count(Engine *e, const Addr *host, int svc, uint64_t h) {
    for (HNode *n = e->pair_counts.buckets[h & e->pair_counts.mask]; n; n = n->hnext) {
        PairCount *c = (PairCount *)n;
        if (c->hash == h && c->svc == svc && addr_eq(&c->host, host)) return c;
    }
    return NULL;
}

static inline uint64_t pair_hash(uint64_t host_hash, int svc) { return mix(host_hash, svc + 1); }

/* Add (step 1) or remove (step -1) one connection's entry from the time window's counts. */
static int time_count(Engine *e, const TimeEntry *t, int step) {
    uint64_t hh = hash_addr(&t->host), ph = pair_hash(hh, t->svc);
    HostCount *host = host_count(e, &t->host, hh);
    if (!host) {
        host = PyMem_Calloc(1, sizeof(HostCount));
        if (!host) return -1;
        host->hash = hh;
        host->host = t->host;
        if (map_insert(&e->host_counts, (HNode *)host) < 0) return -1;
    }
    PairCount *pair = pair_count(e, &t->host, t->svc, ph);
    if (!pair) {
        pair = PyMem_Calloc(1, sizeof(PairCount));
        if (!pair) return -1;
        pair->hash = ph;
        pair->host = t->host;
        pair->svc = t->svc;
        if (map_insert(&e->pair_counts, (HNode *)pair) < 0) return -1;
        host->services++;
    }
    SrvCount *srv = &e->srv_counts[t->svc];
    host->n += step, host->serror += step * t->serror, host->rerror += step * t->rerror;
    srv->n += step, srv->serror += step * t->serror, srv->rerror += step * t->rerror;
    pair->n += step;
    if (!pair->n) {
        map_remove(&e->pair_counts, (HNode *)pair);
        PyMem_Free(pair);
        host->services--;
    }
    if (!host->n) {
        map_remove(&e->host_counts, (HNode *)host);
        PyMem_Free(host);
    }
    return 0;
}

/* The 9 time-window values of a connection that ended at t->end, into row[22..30]. */
static int time_window(Engine *e, const TimeEntry *t, PyObject *row) {
    double horizon = t->end - e->time_window;
    while (e->recent_n && recent_at(e, 0)->end < horizon) {
        TimeEntry old = *recent_at(e, 0);
        e->recent_head = (e->recent_head + 1) % e->recent_cap;
        e->recent_n--;
        if (time_count(e, &old, -1) < 0) return -1;
    }
    if (recent_push(e, t) < 0 || time_count(e, t, 1) < 0) return -1;
    uint64_t hh = hash_addr(&t->host);
    HostCount *host = host_count(e, &t->host, hh);
    PairCount *pair = pair_count(e, &t->host, t->svc, pair_hash(hh, t->svc));
    SrvCount *srv = &e->srv_counts[t->svc];
    int64_t n = host->n, m = srv->n;
    PyObject *v[9] = {
        PyLong_FromLongLong(n < e->count_cap ? n : e->count_cap),
        PyLong_FromLongLong(m < e->count_cap ? m : e->count_cap),
        rate(e, host->serror, n), rate(e, srv->serror, m), rate(e, host->rerror, n),
        rate(e, srv->rerror, m), rate(e, pair->n, n), rate(e, host->services - 1, n),
        rate(e, m - pair->n, m)};
    for (int i = 0; i < 9; i++) {
        if (!v[i]) return -1;
        PyTuple_SET_ITEM(row, 22 + i, v[i]);
    }
    return 0;
}

/* ---- host window */

static HostRing *host_ring(Engine *e, const Addr *host) {
    uint64_t h = hash_addr(host);
    HostRing *r = NULL;
    for (HNode *n = e->host_rings.buckets[h & e->host_rings.mask]; n; n = n->hnext) {
        HostRing *c = (HostRing *)n;
        if (c->hash == h && addr_eq(&c->host, host)) {
            r = c;
            break;
        }
    }
    if (r) { /* most recently seen last */
        if (r != e->hr_tail) {
            if (r->prev) r->prev->next = r->next;
            else e->hr_head = r->next;
            r->next->prev = r->prev;
            r->prev = e->hr_tail;
            r->next = NULL;
            e->hr_tail->next = r;
            e->hr_tail = r;
        }
        return r;
    }
    r = PyMem_Calloc(1, sizeof(HostRing));
    if (!r) return NULL;
    r->hash = h;
    r->host = *host;
    if (map_insert(&e->host_rings, (HNode *)r) < 0) return NULL;
    r->prev = e->hr_tail;
    if (e->hr_tail) e->hr_tail->next = r;
    else e->hr_head = r;
    e->hr_tail = r;
    if ((Py_ssize_t)e->host_rings.n > e->max_hosts) { /* forget the least recently seen host */
        HostRing *old = e->hr_head;
        e->hr_head = old->next;
        e->hr_head->prev = NULL;
        map_remove(&e->host_rings, (HNode *)old);
        PyMem_Free(old->ring);
        PyMem_Free(old);
    }
    return r;
}

static int host_push(Engine *e, HostRing *r, const HostEntry *entry) {
    if (r->n < e->host_cap) {
        if (r->n == r->cap) {
            int cap = r->cap ? r->cap * 4 : 4;
            if (cap > e->host_cap) cap = e->host_cap;
            HostEntry *ring = PyMem_Realloc(r->ring, cap * sizeof(HostEntry));
            if (!ring) return -1;
            r->ring = ring;
            r->cap = cap;
        }
        r->ring[r->n++] = *entry;
    } else { /* full: the entry replaces the oldest */
        r->ring[r->oldest] = *entry;
        r->oldest = (r->oldest + 1) % e->host_cap;
    }
    return 0;
}

static int srv_push(Engine *e, SrvRing *r, const SrvEntry *entry) {
    if (!r->ring) {
        r->ring = PyMem_Malloc(e->host_cap * sizeof(SrvEntry));
        if (!r->ring) return -1;
    }
    if (r->n < e->host_cap) r->ring[r->n++] = *entry;
    else {
        r->ring[r->oldest] = *entry;
        r->oldest = (r->oldest + 1) % e->host_cap;
    }
    return 0;
}

/* The 10 host-window values, into row[31..40]. */
static int host_window(Engine *e, const Addr *host, int svc, int port, int serror, int rerror,
                       PyObject *row) {
    HostRing *hr = host_ring(e, host);
    if (!hr) return -1;
    SrvRing *sr = &e->srv_rings[svc];
    HostEntry he = {(uint16_t)svc, (uint16_t)port, (uint8_t)serror, (uint8_t)rerror};
    SrvEntry se = {*host, (uint16_t)port, (uint8_t)serror, (uint8_t)rerror};
    if (host_push(e, hr, &he) < 0 || srv_push(e, sr, &se) < 0) return -1;
    int64_t same_srv = 0, same_port = 0, h_serror = 0, h_rerror = 0, services = 0;
    uint64_t seen[MAX_SERVICES / 64] = {0};
    for (int i = 0; i < hr->n; i++) {
        const HostEntry *x = &hr->ring[i];
        same_srv += x->svc == svc;
        same_port += x->port == port;
        h_serror += x->serror;
        h_rerror += x->rerror;
        uint64_t bit = 1ull << (x->svc & 63);
        if (!(seen[x->svc >> 6] & bit)) {
            seen[x->svc >> 6] |= bit;
            services++;
        }
    }
    int64_t same_host = 0, s_serror = 0, s_rerror = 0;
    for (int i = 0; i < sr->n; i++) {
        const SrvEntry *x = &sr->ring[i];
        same_host += addr_eq(&x->host, host);
        s_serror += x->serror;
        s_rerror += x->rerror;
    }
    int64_t n = hr->n, m = sr->n;
    PyObject *v[10] = {PyLong_FromLongLong(n),
                       PyLong_FromLongLong(m),
                       rate(e, same_srv, n),
                       rate(e, services - 1, n),
                       rate(e, same_port, n),
                       rate(e, m - same_host, m),
                       rate(e, h_serror, n),
                       rate(e, s_serror, m),
                       rate(e, h_rerror, n),
                       rate(e, s_rerror, m)};
    for (int i = 0; i < 10; i++) {
        if (!v[i]) return -1;
        PyTuple_SET_ITEM(row, 31 + i, v[i]);
    }
    return 0;
}

/* ---- rows */

static PyObject *address_text(const Addr *a) {
    char text[INET6_ADDRSTRLEN];
    inet_ntop(a->len == 4 ? AF_INET : AF_INET6, a->b, text, sizeof(text));
    return PyUnicode_FromString(text);
}

static PyObject *payload_bytes(const Conn *c, int side) {
    return PyBytes_FromStringAndSize((const char *)c->data[side], c->data_len[side]);
}

/* The 13 content values into row[9..21]. */
static int content(Engine *e, const Conn *c, PyObject *row) {
    PyObject *values;
    if (c->dialect) {
        PyObject *orig = payload_bytes(c, 0), *resp = payload_bytes(c, 1);
        values = orig && resp ? PyObject_CallFunction(e->content_fn, "OOOO", c->dialect, orig,
                                                      resp, established(c) ? Py_True : Py_False)
                              : NULL;
        Py_XDECREF(orig);
        Py_XDECREF(resp);
        if (!values) return -1;
        if (!PyTuple_Check(values) || PyTuple_GET_SIZE(values) != 13) {
            Py_DECREF(values);
            PyErr_SetString(PyExc_TypeError, "content() must return 13 values");
            return -1;
        }
    } else {
        values = c->proto == TCP && c->orig_bytes && c->resp_bytes && established(c)
                     ? e->logged_in_only
                     : e->no_content;
        Py_INCREF(values);
    }
    for (int i = 0; i < 13; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        Py_INCREF(v);
        PyTuple_SET_ITEM(row, 9 + i, v);
    }
    Py_DECREF(values);
    return 0;
}

static int fill_row(Engine *e, const Conn *c, PyObject *row) {
    int flag = flag_of(c);
    PyObject *service = service_of(e, c);
    PyObject *proto = protocol_name(e, c->proto);
    if (!service || !proto) return -1;
    int svc = (int)PyLong_AsLong(PyDict_GetItem(e->service_index, service));
    int icmp = c->proto == ICMP || c->proto == ICMPV6;
    int land = addr_eq(&c->orig, &c->resp) && (icmp || c->orig_port == c->resp_port);
    Py_INCREF(proto);
    Py_INCREF(service);
    Py_INCREF(e->flags[flag]);
    PyObject *basic[9] = {PyLong_FromDouble(c->last - c->start), proto, service, e->flags[flag],
                          PyLong_FromLongLong(c->orig_bytes), PyLong_FromLongLong(c->resp_bytes),
                          PyLong_FromLong(land), PyLong_FromLongLong(c->wrong_fragment),
                          PyLong_FromLongLong(c->urgent)};
    PyObject *ends[6] = {address_text(&c->orig), PyLong_FromLong(icmp ? 0 : c->orig_port),
                         address_text(&c->resp), PyLong_FromLong(icmp ? 0 : c->resp_port),
                         PyFloat_FromDouble(c->start), PyFloat_FromDouble(c->last)};
    int failed = 0;
    for (int i = 0; i < 9; i++) {
        failed |= !basic[i];
        PyTuple_SET_ITEM(row, i, basic[i]);
    }
    for (int i = 0; i < 6; i++) {
        failed |= !ends[i];
        PyTuple_SET_ITEM(row, 41 + i, ends[i]);
    }
    if (failed || content(e, c, row) < 0) return -1;
    int serror = e->flag_serror[flag], rerror = e->flag_rerror[flag];
    TimeEntry t = {c->last, c->resp, (uint16_t)svc, (uint8_t)serror, (uint8_t)rerror};
    if (time_window(e, &t, row) < 0) return -1;
    return host_window(e, &c->resp, svc, c->orig_port, serror, rerror, row);
}

static void free_conn(Engine *e, Conn *c) {
    if (c->inspected) e->payload_held -= c->data_len[0] + c->data_len[1];
    PyMem_Free(c->data[0]);
    PyMem_Free(c->data[1]);
    PyMem_Free(c);
}

/* An ended connection (already out of the tables): its row appended to the output. */
static int emit(Engine *e, Conn *c) {
    e->emitted++;
    PyObject *row = PyTuple_New(47);
    int status = row ? fill_row(e, c, row) : -1;
    free_conn(e, c);
    if (status == 0) status = PyList_Append(e->out, row);
    Py_XDECREF(row);
    return status;
}

/* ---- the connection table */

static Conn *conn_find(Engine *e, const Key *key, int ns) {
    Key canon;
    canonical(key, &canon);
    uint64_t h = hash_key(&canon, ns);
    for (HNode *n = e->conns.buckets[h & e->conns.mask]; n; n = n->hnext) {
        Conn *c = (Conn *)n;
        if (c->hash != h || (c->table == DATAGRAMS) != ns) continue;
        Key other;
        canonical(&c->key, &other);
        if (key_eq(&other, &canon)) return c;
    }
    return NULL;
}

static int conn_insert(Engine *e, Conn *c, int table) {
    Key canon;
    canonical(&c->key, &canon);
    c->table = (uint8_t)table;
    c->hash = hash_key(&canon, table == DATAGRAMS);
    if (map_insert(&e->conns, (HNode *)c) < 0) return -1;
    list_push(&e->tables[table], c);
    return 0;
}

static void conn_remove(Engine *e, Conn *c) {
    map_remove(&e->conns, (HNode *)c);
    list_unlink(&e->tables[c->table], c);
}

static void move_to_end(Engine *e, Conn *c) {
    List *l = &e->tables[c->table];
    if (l->tail != c) {
        list_unlink(l, c);
        list_push(l, c);
    }
}

/* Between TCP tables, which share one namespace: the hash stays valid. */
static void move_table(Engine *e, Conn *c, int table) {
    list_unlink(&e->tables[c->table], c);
    c->table = (uint8_t)table;
    list_push(&e->tables[table], c);
}

static Conn *new_conn(Engine *e, const Key *key, const Packet *p, int flipped) {
    Conn *c = PyMem_Calloc(1, sizeof(Conn));
    if (!c) {
        PyErr_NoMemory();
        return NULL;
    }
    c->key = *key;
    c->orig = flipped ? p->dst : p->src;
    c->resp = flipped ? p->src : p->dst;
    c->orig_port = flipped ? p->dport : p->sport;
    c->resp_port = flipped ? p->sport : p->dport;
    c->proto = p->proto;
    c->start = c->last = p->ts;
    c->icmp_type = p->icmp_type;
    c->icmp_code = p->icmp_code;
    c->seq_base[0] = c->seq_base[1] = c->seq_top[0] = c->seq_top[1] = -1;
    c->dialect = c->proto == TCP ? e->dialects[c->resp_port] : NULL;
    c->inspected = c->dialect != NULL;
    return c;
}

/* Growth of the direction's sequence-number span, as Bro/Zeek count bytes. */
static int64_t new_payload(Conn *c, const Packet *p, int side) {
    uint32_t seq = p->seq + ((p->flags & SYN) ? 1 : 0);
    if (c->seq_base[side] < 0) c->seq_base[side] = c->seq_top[side] = seq;
    if (!p->payload_len) return 0;
    uint32_t base = (uint32_t)c->seq_base[side], top = (uint32_t)c->seq_top[side];
    int64_t before = (uint32_t)(top - base);
    uint32_t d = base - seq;
    if (d > 0 && d < 0x80000000u) base = seq;
    uint32_t end = seq + (uint32_t)p->payload_len; /* mod 2^32, as (seq + size) & 0xFFFFFFFF */
    uint32_t grow = end - top;
    if (grow > 0 && grow < 0x80000000u) top = end;
    c->seq_base[side] = base;
    c->seq_top[side] = top;
    return (int64_t)(uint32_t)(top - base) - before;
}

static int keep(Engine *e, Conn *c, const uint8_t *data, Py_ssize_t size, int side) {
    Py_ssize_t room = e->content_cap - c->data_len[side];
    if (room <= 0) return 0;
    int64_t wanted = room < size ? room : size;
    int64_t granted = e->payload_limit - e->payload_held;
    if (granted > wanted) granted = wanted;
    if (granted < 0) granted = 0;
    e->payload_held += granted;
    e->payload_refused += wanted - granted;
    if (!granted) return 0;
    uint8_t *buffer = PyMem_Realloc(c->data[side], c->data_len[side] + granted);
    if (!buffer) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(buffer + c->data_len[side], data, granted);
    c->data[side] = buffer;
    c->data_len[side] += granted;
    return 0;
}

static int conn_add(Engine *e, Conn *c, const Packet *p, int from_orig) {
    c->last = p->ts;
    int64_t new_bytes;
    if (c->proto == TCP) {
        unsigned f = p->flags, h = c->history;
        if (f & URG) c->urgent++;
        if (from_orig) {
            if ((f & SYN) && !(f & ACK)) h |= O_SYN;
            if (f & FIN) h |= O_FIN;
        } else {
            if (f & SYN) h |= R_SYNACK;
            if (f & FIN) h |= R_FIN;
        }
        /* a reset counts unless one came before or both FINs (this packet's included) did */
        if ((f & RST) && !(h & (O_RST | R_RST)) && (h & (O_FIN | R_FIN)) != (O_FIN | R_FIN))
            h |= from_orig ? O_RST : R_RST;
        c->history = (uint8_t)h;
        new_bytes = new_payload(c, p, from_orig ? 0 : 1);
    } else {
        new_bytes = p->payload_len;
    }
    if (from_orig) c->orig_bytes += new_bytes;
    else c->resp_bytes += new_bytes;
    if (new_bytes && c->inspected) { /* payload[-new_bytes:] */
        Py_ssize_t size = p->payload_len, start;
        if (new_bytes > 0) start = new_bytes >= size ? 0 : size - new_bytes;
        else start = -new_bytes >= size ? size : -new_bytes;
        return keep(e, c, p->payload + start, size - start, from_orig ? 0 : 1);
    }
    return 0;
}

/* ---- fragments */

static Py_ssize_t bisect_right(const int64_t *a, Py_ssize_t n, int64_t x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t bisect_left(const int64_t *a, Py_ssize_t n, int64_t x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int datagram_faults(const Datagram *d, int64_t start, int64_t end, int more, int64_t limit) {
    Py_ssize_t i = bisect_right(d->starts, d->n, start) - 1;
    int overlaps = (i >= 0 && d->ends[i] > start) || (i + 1 < d->n && d->starts[i + 1] < end);
    int inside = i >= 0 && end <= d->ends[i];
    int short_last = !more && d->n > 0 && end < d->top;
    return overlaps + inside + short_last + (end > limit);
}

static int datagram_cover(Engine *e, Datagram *d, int64_t start, int64_t end) {
    Py_ssize_t lo = bisect_left(d->ends, d->n, start), hi = bisect_right(d->starts, d->n, end);
    if (lo < hi) {
        if (d->starts[lo] < start) start = d->starts[lo];
        if (d->ends[hi - 1] > end) end = d->ends[hi - 1];
    } else if (d->n >= e->max_spans) {
        return 0;
    }
    if (hi < lo) hi = lo;
    Py_ssize_t n = d->n - (hi - lo) + 1;
    if (n > d->cap) {
        Py_ssize_t cap = d->cap ? d->cap * 2 : 4;
        int64_t *starts = PyMem_Realloc(d->starts, cap * sizeof(int64_t));
        if (!starts) return -1;
        d->starts = starts;
        int64_t *ends = PyMem_Realloc(d->ends, cap * sizeof(int64_t));
        if (!ends) return -1;
        d->ends = ends;
        d->cap = cap;
    }
    memmove(d->starts + lo + 1, d->starts + hi, (d->n - hi) * sizeof(int64_t));
    memmove(d->ends + lo + 1, d->ends + hi, (d->n - hi) * sizeof(int64_t));
    d->starts[lo] = start;
    d->ends[lo] = end;
    d->n = n;
    if (end > d->top) d->top = end;
    return 0;
}

static void datagram_unlink(Engine *e, Datagram *d) {
    if (d->prev) d->prev->next = d->next;
    else e->dg_head = d->next;
    if (d->next) d->next->prev = d->prev;
    else e->dg_tail = d->prev;
    d->prev = d->next = NULL;
}

static void datagram_append(Engine *e, Datagram *d) {
    d->prev = e->dg_tail;
    d->next = NULL;
    if (e->dg_tail) e->dg_tail->next = d;
    else e->dg_head = d;
    e->dg_tail = d;
}

static void datagram_free(Engine *e, Datagram *d) {
    map_remove(&e->datagrams, (HNode *)d);
    datagram_unlink(e, d);
    PyMem_Free(d->starts);
    PyMem_Free(d->ends);
    PyMem_Free(d);
}

/* Record a fragment: its datagram and how many faults it shows (-1 on error). */
static Datagram *fragment_add(Engine *e, const Packet *p, int *faults) {
    Key id;
    memset(&id, 0, sizeof(id));
    id.a = p->src;
    id.b = p->dst;
    id.proto = p->proto;
    id.ipid = p->ip_id;
    id.kind = 4;
    uint64_t h = hash_key(&id, 2);
    Datagram *d = NULL;
    for (HNode *n = e->datagrams.buckets[h & e->datagrams.mask]; n; n = n->hnext) {
        Datagram *x = (Datagram *)n;
        if (x->hash == h && key_eq(&x->id, &id)) {
            d = x;
            break;
        }
    }
    if (!d) {
        d = PyMem_Calloc(1, sizeof(Datagram));
        if (!d) {
            PyErr_NoMemory();
            return NULL;
        }
        d->hash = h;
        d->id = id;
        if (map_insert(&e->datagrams, (HNode *)d) < 0) {
            PyMem_Free(d);
            PyErr_NoMemory();
            return NULL;
        }
        datagram_append(e, d);
        if ((Py_ssize_t)e->datagrams.n > e->max_datagrams) datagram_free(e, e->dg_head);
    } else if (d != e->dg_tail) {
        datagram_unlink(e, d);
        datagram_append(e, d);
    }
    d->last_seen = p->ts;
    int64_t start = p->frag_offset;
    int64_t end = start + (start ? p->payload_len : p->ip_payload_len);
    int64_t limit = e->max_datagram - (p->version == 4 ? 20 : 0);
    *faults = datagram_faults(d, start, end, p->more_fragments, limit);
    if (datagram_cover(e, d, start, end) < 0) {
        PyErr_NoMemory();
        return NULL;
    }
    return d;
}

static void fragments_expire(Engine *e, double now) {
    while (e->dg_head && !(now - e->dg_head->last_seen <= e->t.icmp_fragments))
        datagram_free(e, e->dg_head);
}

/* ---- table operations, in the reference engine's order */

static void packet_key(const Packet *p, Key *k) {
    memset(k, 0, sizeof(*k));
    k->a = p->src;
    k->b = p->dst;
    k->proto = p->proto;
    if (p->proto == ICMP || p->proto == ICMPV6) {
        k->kind = 4;
        k->ipid = p->ip_id;
    } else {
        k->kind = 5;
        k->pa = p->sport;
        k->pb = p->dport;
    }
}

static int expire(Engine *e, double now) {
    static const int order[4] = {CLOSING, ATTEMPTS, ACTIVE, DATAGRAMS};
    double timeouts[4] = {e->t.tcp_closed, e->t.tcp_attempt, e->t.tcp_established, e->t.udp};
    for (int i = 0; i < 4; i++) {
        List *l = &e->tables[order[i]];
        while (l->head && !(now - l->head->last <= timeouts[i])) {
            Conn *c = l->head;
            conn_remove(e, c);
            if (emit(e, c) < 0) return -1;
        }
    }
    fragments_expire(e, now);
    return 0;
}

static int evict(Engine *e) {
    static const int order[4] = {CLOSING, ATTEMPTS, DATAGRAMS, ACTIVE};
    e->evicted++;
    for (int i = 0; i < 4; i++) {
        Conn *c = e->tables[order[i]].head;
        if (c) {
            conn_remove(e, c);
            return emit(e, c);
        }
    }
    return 0;
}

static int track_tcp(Engine *e, const Packet *p, int faults) {
    Key key, rkey;
    packet_key(p, &key);
    reverse(&key, &rkey);
    Conn *c = conn_find(e, &key, 0);
    int from_orig = c ? key_eq(&c->key, &key) : 1;
    if (c && c->table == CLOSING && (p->flags & (SYN | ACK)) == SYN) {
        conn_remove(e, c); /* the port pair is reused by a new connection */
        if (emit(e, c) < 0) return -1;
        c = NULL;
    }
    if (!c) {
        int flipped = (p->flags & (SYN | ACK)) == (SYN | ACK);
        c = new_conn(e, flipped ? &rkey : &key, p, flipped);
        if (!c) return -1;
        from_orig = !flipped;
        if (conn_insert(e, c, (p->flags & SYN) && !flipped ? ATTEMPTS : ACTIVE) < 0) {
            free_conn(e, c);
            PyErr_NoMemory();
            return -1;
        }
    } else {
        move_to_end(e, c);
    }
    int was_established = established(c);
    if (conn_add(e, c, p, from_orig) < 0) return -1;
    c->wrong_fragment += faults;
    if (c->table != CLOSING && finished(c)) move_table(e, c, CLOSING);
    else if (c->table == ATTEMPTS && established(c) && !was_established) move_table(e, c, ACTIVE);
    return 0;
}

/* A new connection of datagrams (UDP, ICMP, fragments) for key, in the datagrams' list; NULL
 * with an exception set when memory runs out. */
static Conn *new_datagram(Engine *e, const Key *key, const Packet *p) {
    Conn *c = new_conn(e, key, p, 0);
    if (!c) return NULL;
    if (conn_insert(e, c, DATAGRAMS) < 0) {
        free_conn(e, c);
        PyErr_NoMemory();
        return NULL;
    }
    return c;
}

static int later_fragment(Engine *e, const Packet *p, Datagram *d, int faults) {
    if (!d->has_conn_key) {
        packet_key(p, &d->conn_key);
        d->has_conn_key = 1;
    }
    Conn *c = conn_find(e, &d->conn_key, 0);
    if (!c) c = conn_find(e, &d->conn_key, 1);
    if (!c) {
        c = new_datagram(e, &d->conn_key, p);
        if (!c) return -1;
    } else {
        move_to_end(e, c); /* its idle time restarts: a fresh head must not pin the list */
    }
    c->wrong_fragment += faults;
    c->last = p->ts;
    if ((p->proto == ICMP || p->proto == ICMPV6) && !p->more_fragments && c->table == DATAGRAMS) {
        conn_remove(e, c); /* the datagram's last fragment ends the ICMP message */
        return emit(e, c);
    }
    return 0;
}

static int track_datagram(Engine *e, const Packet *p, int faults) {
    Key key;
    packet_key(p, &key);
    Conn *c = conn_find(e, &key, 1);
    int from_orig = 1;
    if (!c) {
        c = new_datagram(e, &key, p);
        if (!c) return -1;
    } else {
        from_orig = key_eq(&c->key, &key);
        move_to_end(e, c);
    }
    if (conn_add(e, c, p, from_orig) < 0) return -1;
    c->wrong_fragment += faults;
    if ((p->proto == ICMP || p->proto == ICMPV6) && !p->more_fragments) {
        conn_remove(e, c);
        return emit(e, c);
    }
    return 0;
}

static int table_add(Engine *e, const Packet *p) {
    if (p->ts >= e->next_sweep) {
        if (expire(e, p->ts) < 0) return -1;
        e->next_sweep = p->ts + e->t.sweep_interval;
    }
    int faults = 0;
    Datagram *d = NULL;
    if (is_fragment(p)) {
        d = fragment_add(e, p, &faults);
        if (!d) return -1;
        if (!p->frag_offset) {
            packet_key(p, &d->conn_key);
            d->has_conn_key = 1;
        }
    }
    int status;
    if (p->frag_offset) status = later_fragment(e, p, d, faults);
    else if (p->proto == TCP) status = track_tcp(e, p, faults);
    else if ((p->proto == ICMP || p->proto == ICMPV6) && !is_fragment(p)) {
        Key key;
        packet_key(p, &key);
        Conn *c = new_conn(e, &key, p, 0);
        if (!c) return -1;
        if (conn_add(e, c, p, 1) < 0) {
            free_conn(e, c);
            return -1;
        }
        status = emit(e, c);
    } else status = track_datagram(e, p, faults);
    if (status < 0) return -1;
    Py_ssize_t open = 0;
    for (int i = 0; i < N_TABLES; i++) open += e->tables[i].n;
    if (open > e->max_connections) return evict(e);
    return 0;
}

static int count_reason(Engine *e, int reason, int linktype) {
    e->malformed++;
    if (reason == R_LINKTYPE) {
        PyObject *text = PyUnicode_FromFormat("unsupported link type %d", linktype);
        if (!text) return -1;
        PyObject *n = PyDict_GetItemWithError(e->linktype_reasons, text);
        long count = n ? PyLong_AsLong(n) : 0;
        PyObject *now = PyLong_FromLong(count + 1);
        int status = now ? PyDict_SetItem(e->linktype_reasons, text, now) : -1;
        if (status == 0 && !n) status = PyList_Append(e->reason_order, text);
        Py_XDECREF(now);
        Py_DECREF(text);
        return status;
    }
    if (!e->reasons[reason]++) {
        PyObject *text = PyUnicode_FromString(REASONS[reason]);
        int status = text ? PyList_Append(e->reason_order, text) : -1;
        Py_XDECREF(text);
        return status;
    }
    return 0;
}

static int feed_one(Engine *e, const uint8_t *frame, Py_ssize_t size, int linktype, double ts) {
    e->seen++;
    if (ts < e->latest) { /* a clock step back: durations and windows must not go negative */
        e->backwards++;
        ts = e->latest;
    } else {
        e->latest = ts;
    }
    Packet p;
    int status = decode(&p, frame, size, linktype);
    if (status < 0) return count_reason(e, -1 - status, linktype);
    if (status == NOT_IP) {
        e->not_ip++;
        return 0;
    }
    e->parsed++;
    p.ts = ts;
    return table_add(e, &p);
}

/* ------------------------------------------------------------------ Python interface */

static PyObject *begin(Engine *e) {
    e->out = PyList_New(0);
    return e->out;
}

static PyObject *end(Engine *e, int status) {
    PyObject *out = e->out;
    e->out = NULL;
    if (status < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *Engine_feed(Engine *e, PyObject *args) {
    Py_buffer frame;
    int linktype;
    double ts;
    if (!PyArg_ParseTuple(args, "y*id", &frame, &linktype, &ts)) return NULL;
    if (!begin(e)) {
        PyBuffer_Release(&frame);
        return NULL;
    }
    int status = feed_one(e, frame.buf, frame.len, linktype, ts);
    PyBuffer_Release(&frame);
    return end(e, status);
}

static int typed(Py_buffer *b, const char *format, Py_ssize_t itemsize, Py_ssize_t n,
                 const char *name) {
    if (b->itemsize != itemsize || (b->format && strcmp(b->format, format) != 0) ||
        b->len / itemsize != n) {
        PyErr_Format(PyExc_ValueError, "block %s: expected %zd items of type '%s'", name, n,
                     format);
        return -1;
    }
    return 0;
}

static PyObject *Engine_feed_block(Engine *e, PyObject *args) {
    Py_buffer data, offsets, lengths, linktypes, stamps;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*", &data, &offsets, &lengths, &linktypes, &stamps))
        return NULL;
    Py_ssize_t n = offsets.len / 8;
    int status = typed(&offsets, "Q", 8, n, "offsets");
    if (!status) status = typed(&lengths, "I", 4, n, "lengths");
    if (!status) status = typed(&linktypes, "H", 2, n, "linktypes");
    if (!status) status = typed(&stamps, "d", 8, n, "ts");
    const uint64_t *off = offsets.buf;
    const uint32_t *len = lengths.buf;
    for (Py_ssize_t i = 0; !status && i < n; i++) {
        if (off[i] > (uint64_t)data.len || len[i] > (uint64_t)data.len - off[i]) {
            PyErr_Format(PyExc_ValueError, "block frame %zd lies outside the data", i);
            status = -1;
        }
    }
    if (!status && !begin(e)) status = -1;
    else if (!status) {
        const uint8_t *base = data.buf;
        const uint16_t *lt = linktypes.buf;
        const double *ts = stamps.buf;
        for (Py_ssize_t i = 0; !status && i < n; i++)
            status = feed_one(e, base + off[i], len[i], lt[i], ts[i]);
        PyBuffer_Release(&data);
        PyBuffer_Release(&offsets);
        PyBuffer_Release(&lengths);
        PyBuffer_Release(&linktypes);
        PyBuffer_Release(&stamps);
        return end(e, status);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&linktypes);
    PyBuffer_Release(&stamps);
    return NULL;
}

static PyObject *Engine_tick(Engine *e, PyObject *arg) {
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    if (!begin(e)) return NULL;
    return end(e, expire(e, now));
}

static int conn_by_last(const void *x, const void *y) {
    const Conn *a = *(Conn *const *)x, *b = *(Conn *const *)y;
    return a->last < b->last ? -1 : a->last > b->last ? 1 : 0;
}

static PyObject *Engine_finish(Engine *e, PyObject *Py_UNUSED(arg)) {
    static const int order[4] = {CLOSING, ATTEMPTS, ACTIVE, DATAGRAMS};
    Py_ssize_t n = 0, k = 0;
    for (int i = 0; i < N_TABLES; i++) n += e->tables[i].n;
    Conn **all = PyMem_Malloc((n ? n : 1) * sizeof(Conn *));
    if (!all) return PyErr_NoMemory();
    for (int i = 0; i < 4; i++)
        for (Conn *c = e->tables[order[i]].head; c; c = c->next) all[k++] = c;
    /* a stable sort by last activity: ties keep the tables' order */
    {
        Conn **tmp = PyMem_Malloc((n ? n : 1) * sizeof(Conn *));
        if (!tmp) {
            PyMem_Free(all);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t width = 1; width < n; width *= 2) { /* bottom-up merge sort: stable */
            for (Py_ssize_t lo = 0; lo < n; lo += 2 * width) {
                Py_ssize_t mid = lo + width < n ? lo + width : n;
                Py_ssize_t hi = lo + 2 * width < n ? lo + 2 * width : n;
                Py_ssize_t a = lo, b = mid, t = lo;
                while (a < mid && b < hi) tmp[t++] = conn_by_last(&all[b], &all[a]) < 0 ? all[b++] : all[a++];
                while (a < mid) tmp[t++] = all[a++];
                while (b < hi) tmp[t++] = all[b++];
            }
            Conn **swap = all;
            all = tmp;
            tmp = swap;
        }
        PyMem_Free(tmp);
    }
    for (Py_ssize_t i = 0; i < n; i++) conn_remove(e, all[i]);
    int status = begin(e) ? 0 : -1;
    Py_ssize_t i = 0;
    for (; !status && i < n; i++) status = emit(e, all[i]);
    for (; i < n; i++) free_conn(e, all[i]);
    PyMem_Free(all);
    return end(e, status);
}

static PyObject *Engine_counters(Engine *e, PyObject *Py_UNUSED(arg)) {
    PyObject *reasons = PyDict_New();
    if (!reasons) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(e->reason_order);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = PyList_GET_ITEM(e->reason_order, i), *count = NULL;
        for (int r = 0; r < R_LINKTYPE; r++) {
            if (PyUnicode_CompareWithASCIIString(text, REASONS[r]) == 0) {
                count = PyLong_FromLongLong(e->reasons[r]);
                break;
            }
        }
        if (!count) {
            count = PyDict_GetItem(e->linktype_reasons, text);
            Py_XINCREF(count);
        }
        if (!count || PyDict_SetItem(reasons, text, count) < 0) {
            Py_XDECREF(count);
            Py_DECREF(reasons);
            return NULL;
        }
        Py_DECREF(count);
    }
    return Py_BuildValue(
        "{sLsLsLsLsLsLsLsLsN}", "packets_seen", e->seen, "packets_parsed", e->parsed,
        "packets_malformed", e->malformed, "packets_not_ip", e->not_ip, "connections_emitted",
        e->emitted, "connections_evicted", e->evicted, "payload_bytes_over_budget",
        e->payload_refused, "packets_time_backwards", e->backwards, "malformed_reasons", reasons);
}

static PyObject *Engine_state(Engine *e, PyObject *Py_UNUSED(arg)) {
    Py_ssize_t open = 0, spans = 0;
    for (int i = 0; i < N_TABLES; i++) open += e->tables[i].n;
    for (Datagram *d = e->dg_head; d; d = d->next) spans = d->n > spans ? d->n : spans;
    return Py_BuildValue("{snsLsnsnsnsnsn}", "connections", open, "payload_held", e->payload_held,
                         "datagrams", (Py_ssize_t)e->datagrams.n, "most_spans", spans, "hosts",
                         (Py_ssize_t)e->host_rings.n, "window_connections", e->recent_n,
                         "window_hosts", (Py_ssize_t)e->host_counts.n);
}

/* The engine setting `name` (a borrowed reference), or NULL with KeyError set. */
static PyObject *setting(PyObject *config, const char *name) {
    PyObject *v = PyDict_GetItemString(config, name);
    if (!v) PyErr_Format(PyExc_KeyError, "engine setting %s missing", name);
    return v;
}

static int get_double(PyObject *config, const char *name, double *out) {
    PyObject *v = setting(config, name);
    if (!v) return -1;
    *out = PyFloat_AsDouble(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int get_size(PyObject *config, const char *name, Py_ssize_t *out) {
    PyObject *v = setting(config, name);
    if (!v) return -1;
    *out = PyLong_AsSsize_t(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *get_object(PyObject *config, const char *name) {
    PyObject *v = setting(config, name);
    Py_XINCREF(v);
    return v;
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kwds) {
    PyObject *config;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &config)) return -1;
    Py_ssize_t payload_limit, host_cap, count_cap, max_datagram;
    if (get_double(config, "tcp_attempt", &e->t.tcp_attempt) < 0 ||
        get_double(config, "tcp_established", &e->t.tcp_established) < 0 ||
        get_double(config, "tcp_closed", &e->t.tcp_closed) < 0 ||
        get_double(config, "udp", &e->t.udp) < 0 ||
        get_double(config, "icmp_fragments", &e->t.icmp_fragments) < 0 ||
        get_double(config, "sweep_interval", &e->t.sweep_interval) < 0 ||
        get_double(config, "time_window", &e->time_window) < 0 ||
        get_size(config, "max_connections", &e->max_connections) < 0 ||
        get_size(config, "payload_limit", &payload_limit) < 0 ||
        get_size(config, "content_cap", &e->content_cap) < 0 ||
        get_size(config, "max_datagrams", &e->max_datagrams) < 0 ||
        get_size(config, "max_spans", &e->max_spans) < 0 ||
        get_size(config, "max_datagram", &max_datagram) < 0 ||
        get_size(config, "max_hosts", &e->max_hosts) < 0 ||
        get_size(config, "host_count_cap", &host_cap) < 0 ||
        get_size(config, "window_count_cap", &count_cap) < 0)
        return -1;
    if (host_cap < 1 || host_cap > 65535 || e->max_hosts < 1 || e->max_datagrams < 1) {
        PyErr_SetString(PyExc_ValueError, "engine limits out of range");
        return -1;
    }
    e->payload_limit = payload_limit;
    e->max_datagram = max_datagram;
    e->host_cap = (int)host_cap;
    e->count_cap = (int)count_cap;
    e->latest = -Py_HUGE_VAL;
    if (!(e->service_fn = get_object(config, "service")) ||
        !(e->content_fn = get_object(config, "content")) ||
        !(e->proto_names = get_object(config, "protocol_names")) ||
        !(e->serror_flags = get_object(config, "serror_flags")) ||
        !(e->rerror_flags = get_object(config, "rerror_flags")) ||
        !(e->no_content = get_object(config, "no_content")) ||
        !(e->logged_in_only = get_object(config, "logged_in_only")))
        return -1;
    PyObject *dialects = PyDict_GetItemString(config, "content_ports");
    if (!dialects || !PyDict_Check(dialects)) {
        PyErr_SetString(PyExc_KeyError, "engine setting content_ports missing");
        return -1;
    }
    PyObject *port, *dialect;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dialects, &pos, &port, &dialect)) {
        long p = PyLong_AsLong(port);
        if (p < 0 || p > 65535) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad content port");
            return -1;
        }
        Py_INCREF(dialect);
        e->dialects[p] = dialect;
    }
    for (int i = 0; i < 4; i++) {
        Py_ssize_t size = i < 2 ? 65536 : 257 * 257;
        if (!(e->service_cache[i] = PyMem_Calloc(size, sizeof(PyObject *)))) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (int i = 0; i < 13; i++) {
        if (!(e->flags[i] = PyUnicode_InternFromString(FLAG_NAMES[i]))) return -1;
        int s = PySequence_Contains(e->serror_flags, e->flags[i]);
        int r = PySequence_Contains(e->rerror_flags, e->flags[i]);
        if (s < 0 || r < 0) return -1;
        e->flag_serror[i] = (uint8_t)s;
        e->flag_rerror[i] = (uint8_t)r;
    }
    if (!(e->service_index = PyDict_New()) || !(e->reason_order = PyList_New(0)) ||
        !(e->linktype_reasons = PyDict_New()))
        return -1;
    if (map_init(&e->conns, 1024) < 0 || map_init(&e->datagrams, 64) < 0 ||
        map_init(&e->host_counts, 64) < 0 || map_init(&e->pair_counts, 64) < 0 ||
        map_init(&e->host_rings, 64) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void free_map_nodes(Map *m) {
    if (!m->buckets) return;
    for (size_t i = 0; i <= m->mask; i++) {
        HNode *n = m->buckets[i];
        while (n) {
            HNode *next = n->hnext;
            PyMem_Free(n);
            n = next;
        }
    }
    PyMem_Free(m->buckets);
    m->buckets = NULL;
}

static void Engine_dealloc(Engine *e) {
    for (int i = 0; i < N_TABLES; i++) {
        Conn *c = e->tables[i].head;
        while (c) {
            Conn *next = c->next;
            free_conn(e, c);
            c = next;
        }
    }
    PyMem_Free(e->conns.buckets);
    while (e->dg_head) datagram_free(e, e->dg_head);
    PyMem_Free(e->datagrams.buckets);
    free_map_nodes(&e->host_counts);
    free_map_nodes(&e->pair_counts);
    for (HostRing *r = e->hr_head; r; r = r->next) PyMem_Free(r->ring);
    free_map_nodes(&e->host_rings);
    for (int i = 0; i < MAX_SERVICES; i++) {
        PyMem_Free(e->srv_rings[i].ring);
        Py_XDECREF(e->services[i]);
    }
    PyMem_Free(e->recent);
    for (int i = 0; i < 4; i++) {
        if (!e->service_cache[i]) continue;
        Py_ssize_t size = i < 2 ? 65536 : 257 * 257;
        for (Py_ssize_t j = 0; j < size; j++) Py_XDECREF(e->service_cache[i][j]);
        PyMem_Free(e->service_cache[i]);
    }
    for (int i = 0; i < 256; i++) {
        Py_XDECREF(e->other_service[i]);
        Py_XDECREF(e->proto_name[i]);
    }
    for (int i = 0; i < 65536; i++) Py_XDECREF(e->dialects[i]);
    for (int i = 0; i < 13; i++) Py_XDECREF(e->flags[i]);
    Py_XDECREF(e->service_fn);
    Py_XDECREF(e->content_fn);
    Py_XDECREF(e->proto_names);
    Py_XDECREF(e->serror_flags);
    Py_XDECREF(e->rerror_flags);
    Py_XDECREF(e->no_content);
    Py_XDECREF(e->logged_in_only);
    Py_XDECREF(e->service_index);
    Py_XDECREF(e->reason_order);
    Py_XDECREF(e->linktype_reasons);
    Py_XDECREF(e->out);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMethodDef Engine_methods[] = {
    {"feed", (PyCFunction)Engine_feed, METH_VARARGS,
     "feed(frame, linktype, ts) -> rows of the connections that ended"},
    {"feed_block", (PyCFunction)Engine_feed_block, METH_VARARGS,
     "feed_block(data, offsets, lengths, linktypes, ts) -> rows (arrays 'Q', 'I', 'H', 'd')"},
    {"tick", (PyCFunction)Engine_tick, METH_O, "tick(now) -> rows of connections idle past their timeout"},
    {"finish", (PyCFunction)Engine_finish, METH_NOARGS, "finish() -> rows of every open connection"},
    {"counters", (PyCFunction)Engine_counters, METH_NOARGS, "counters() -> dict"},
    {"state", (PyCFunction)Engine_state, METH_NOARGS,
     "state() -> dict: what the engine holds now (connections, payload bytes, datagrams, ...)"},
    {NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "capture_agent._engine.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Frames in, NSL-KDD rows out (configured by capture_agent.engine).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

/* ------------------------------------------------------------------ CSV text */

static int append(char **buf, Py_ssize_t *len, Py_ssize_t *cap, const char *text, Py_ssize_t n) {
    if (*len + n > *cap) {
        Py_ssize_t size = (*cap + n) * 2;
        char *grown = PyMem_Realloc(*buf, size);
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        *buf = grown;
        *cap = size;
    }
    memcpy(*buf + *len, text, n);
    *len += n;
    return 0;
}

static Py_ssize_t decimal(char *text, long long x) {
    char digits[24];
    int n = 0, negative = x < 0;
    unsigned long long u = negative ? 0ull - (unsigned long long)x : (unsigned long long)x;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    Py_ssize_t len = 0;
    if (negative) text[len++] = '-';
    while (n) text[len++] = digits[--n];
    return len;
}

/* One value as `"%s" % value` writes it. */
static int append_value(char **buf, Py_ssize_t *len, Py_ssize_t *cap, PyObject *v) {
    char text[32];
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) return append(buf, len, cap, text, decimal(text, x));
    } else if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        int k = x >= 0.0 && x <= 1.0 ? (int)(x * 100.0 + 0.5) : -1;
        if (k >= 0 && (v == RATES[k] || memcmp(&x, &PyFloat_AS_DOUBLE(RATES[k]), sizeof(x)) == 0))
            return append(buf, len, cap, RATE_TEXT[k], RATE_LEN[k]);
        char *repr = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!repr) return -1;
        int status = append(buf, len, cap, repr, strlen(repr));
        PyMem_Free(repr);
        return status;
    } else if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &n);
        return utf8 ? append(buf, len, cap, utf8, n) : -1;
    }
    PyObject *str = PyObject_Str(v);
    if (!str) return -1;
    int status = append_value(buf, len, cap, str);
    Py_DECREF(str);
    return status;
}

static PyObject *csv_lines(PyObject *module, PyObject *rows) {
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), len = 0, cap = 256 * (n + 1);
    char *buf = PyMem_Malloc(cap);
    int status = buf ? 0 : -1;
    for (Py_ssize_t i = 0; !status && i < n; i++) {
        PyObject *row = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i), "a row must be a sequence");
        if (!row) {
            status = -1;
            break;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(row);
        for (Py_ssize_t j = 0; !status && j < m; j++) {
            if (j) status = append(&buf, &len, &cap, ",", 1);
            if (!status) status = append_value(&buf, &len, &cap, PySequence_Fast_GET_ITEM(row, j));
        }
        if (!status) status = append(&buf, &len, &cap, "\n", 1);
        Py_DECREF(row);
    }
    Py_DECREF(seq);
    PyObject *text = status ? NULL : PyBytes_FromStringAndSize(buf, len);
    PyMem_Free(buf);
    return text;
}

static PyObject *endpoints(PyObject *module, PyObject *args) {
    Py_buffer frame;
    int linktype;
    if (!PyArg_ParseTuple(args, "y*i", &frame, &linktype)) return NULL;
    Packet p;
    int status = decode(&p, frame.buf, frame.len, linktype);
    PyBuffer_Release(&frame);
    if (status != IS_IP) Py_RETURN_NONE;
    return Py_BuildValue("y#y#iii", p.src.b, (Py_ssize_t)p.src.len, p.dst.b, (Py_ssize_t)p.dst.len,
                         p.sport, p.dport, p.frag_offset);
}

/* Records of a pcap file in buf[pos:end] (at most `limit`), as capture_agent.pcap walks them. */
static PyObject *pcap_records(PyObject *module, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos, end, base, limit, max_frame;
    int big, cut_ok;
    double scale;
    if (!PyArg_ParseTuple(args, "y*nnnnpdnp", &buf, &pos, &end, &base, &limit, &big, &scale,
                          &max_frame, &cut_ok))
        return NULL;
    if (pos < 0 || end > buf.len || pos > end || limit < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "pcap_records: span outside the buffer");
        return NULL;
    }
    Py_ssize_t cap = limit < (end - pos) / 16 + 1 ? limit : (end - pos) / 16 + 1, n = 0;
    uint64_t *offsets = PyMem_Malloc((cap ? cap : 1) * sizeof(uint64_t));
    uint32_t *lengths = PyMem_Malloc((cap ? cap : 1) * sizeof(uint32_t));
    double *stamps = PyMem_Malloc((cap ? cap : 1) * sizeof(double));
    Py_ssize_t stop = base, need = 16;
    const uint8_t *b = buf.buf;
    if (offsets && lengths && stamps) {
        while (n < limit && end - pos >= 16) {
            const uint8_t *h = b + pos;
            uint32_t sec, frac, caplen;
            if (big) {
                sec = be32(h), frac = be32(h + 4), caplen = be32(h + 8);
            } else {
                memcpy(&sec, h, 4), memcpy(&frac, h + 4, 4), memcpy(&caplen, h + 8, 4);
            }
            Py_ssize_t size = caplen < (uint32_t)max_frame ? (Py_ssize_t)caplen : max_frame;
            if (end - pos - 16 < size) {
                if (!cut_ok) {
                    need = 16 + size;
                    break;
                }
                size = end - pos - 16; /* the last record, cut short: kept as far as it goes */
            }
            offsets[n] = (uint64_t)(pos + 16 - base);
            lengths[n] = (uint32_t)size;
            stamps[n] = (double)sec + (double)frac * scale;
            n++;
            stop = pos + 16 + size;
            pos += 16 + (Py_ssize_t)caplen;
        }
    }
    PyBuffer_Release(&buf);
    PyObject *result = NULL;
    if (offsets && lengths && stamps)
        result = Py_BuildValue("y#y#y#nnn", (char *)offsets, n * 8, (char *)lengths, n * 4,
                               (char *)stamps, n * 8, pos, stop, need);
    else
        PyErr_NoMemory();
    PyMem_Free(offsets);
    PyMem_Free(lengths);
    PyMem_Free(stamps);
    return result;
}

static PyMethodDef module_methods[] = {
    {"pcap_records", pcap_records, METH_VARARGS,
     "pcap_records(buf, pos, end, base, limit, big_endian, scale, max_frame, cut_ok) -> "
     "(offsets, lengths, ts as bytes of 'Q', 'I', 'd'; pos, stop, need): the records of a pcap "
     "file in buf[pos:end], offsets from base; need: bytes wanted to go on"},
    {"endpoints", endpoints, METH_VARARGS,
     "endpoints(frame, linktype) -> (src, dst, sport, dport, fragment offset), as the engine "
     "decodes them (addresses as 4 or 16 bytes), or None for a frame that is not IP or is malformed"},
    {"csv_lines", csv_lines, METH_O,
     "csv_lines(rows) -> bytes: each row's values as '%s' writes them, comma-separated, one line each"},
    {NULL}};

static struct PyModuleDef engine_module = {PyModuleDef_HEAD_INIT, "capture_agent._engine",
                                           "The agent's native packet engine.", -1,
                                           module_methods};

PyMODINIT_FUNC PyInit__engine(void) {
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (!m) return NULL;
    PyObject *os = PyImport_ImportModule("os");
    PyObject *seed = os ? PyObject_CallMethod(os, "urandom", "i", 8) : NULL;
    Py_XDECREF(os);
    if (!seed) {
        Py_DECREF(m);
        return NULL;
    }
    memcpy(&hash_seed, PyBytes_AS_STRING(seed), 8);
    Py_DECREF(seed);
    for (int k = 0; k <= 100; k++) {
        if (!(RATES[k] = PyFloat_FromDouble((double)k / 100.0))) return NULL;
        char *repr = PyOS_double_to_string((double)k / 100.0, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!repr) return NULL;
        RATE_LEN[k] = (Py_ssize_t)strlen(repr);
        memcpy(RATE_TEXT[k], repr, RATE_LEN[k]);
        PyMem_Free(repr);
    }
    PyObject *fields = Py_BuildValue("(" "sssssssss" "sssssssssssss" "sssssssss" "ssssssssss" "ssssss" ")",
        "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
        "wrong_fragment", "urgent",
        /* 13 content values, in the order content() gives them */
        "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted",
        "num_root", "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds",
        "is_host_login", "is_guest_login",
        "count", "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
        "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate",
        "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
        "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
        "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
        "src_ip", "src_port", "dst_ip", "dst_port", "start_time", "end_time");
    if (!fields || PyModule_AddObject(m, "FIELDS", fields) < 0) {
        Py_XDECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
