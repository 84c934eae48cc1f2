/*
 * delay-relay: a TCP relay that delays every byte by a fixed time per direction.
 *
 * Test tool for roam's emulated WAN (this kernel has no netem). It listens on
 * ADDR:PORT; for every accepted connection it connects to TARGET:PORT and
 * forwards bytes both ways. Every buffer read is stamped on arrival and
 * written out --delay-ms later (one FIFO per direction), so order and
 * throughput are kept while latency is added: a request/response over one
 * relayed connection costs 2 x delay. Up to --max-buffer-mib per direction may
 * be in flight (the bandwidth-delay product at 100 Mbit/s and 25 ms is only
 * ~312 KB); past that the relay stops reading (backpressure).
 *
 * Also emulated:
 *  - half-close: EOF from one side becomes shutdown(SHUT_WR) on the other once
 *    the data before it has been delivered (and the delay has passed);
 *  - resets: an error/RST on one side closes it at once and resets the other
 *    side (SO_LINGER 0) one delay later; data already "in flight" towards the
 *    surviving side is delivered until then;
 *  - the TCP handshake: the client's connect() to the relay completes at once,
 *    so the relay waits 3 x delay before connecting to the target (SYN,
 *    SYN-ACK, ACK), giving a fresh connection the real cost of 2 extra one-way
 *    trips before the first response (disable with --no-handshake-delay);
 *  - an optional token bucket (--rate-mbit) per direction, shared by all
 *    connections, for setups without tc/tbf.
 *
 * Single-threaded, epoll based, C11 + POSIX/Linux only. Logs nothing unless
 * --verbose; exits 0 on SIGTERM/SIGINT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NEVER INT64_MAX
#define READ_CHUNK (64 * 1024)
#define MAX_EVENTS 256

static const char *prog = "delay-relay";

/* ---- options ---- */
static struct sockaddr_storage listen_addr, target_addr;
static socklen_t listen_len, target_len;
static const char *listen_str, *target_str;
static int64_t delay_ns = -1; /* required */
static double rate_bytes_per_ns = 0; /* 0: unlimited */
static size_t max_queue = 16u << 20;
static int max_conns = 1024;
static int64_t connect_timeout_ns = 0; /* 0: kernel default */
static bool handshake_delay = true;
static int verbose = 0;

/* ---- state ---- */
struct chunk {
	struct chunk *next;
	int64_t due;
	size_t len, off;
	unsigned char data[];
};

struct dir { /* bytes read from e[i] and written to e[1-i] */
	struct chunk *head, *tail;
	size_t queued;
	bool rd_eof;     /* EOF (or error) read from the source: read no more */
	bool eof_fwd;    /* an EOF is to be forwarded (shutdown) */
	int64_t eof_due; /* ... not before this time */
	bool shut;       /* shutdown(dst, SHUT_WR) done */
};

struct conn;
struct end {
	struct conn *c;
	int idx;         /* 0: client side, 1: target side */
	int fd;          /* -1 once closed */
	uint32_t mask;   /* events registered (0 and !in_epoll: not registered) */
	bool in_epoll;
	bool rd_ready;   /* epoll said readable (level-triggered: may be stale) */
	bool wblocked;   /* last write would block: wait for EPOLLOUT */
	bool out_ready;  /* EPOLLOUT/ERR/HUP seen (used while connecting) */
	bool hup;        /* HUP/ERR seen: removed from epoll, polled instead */
};

enum { ST_WAIT, ST_CONNECTING, ST_OPEN };

struct conn {
	struct conn *prev, *next;
	unsigned id;
	int state;
	int64_t connect_at, connect_deadline;
	int64_t abort_due; /* NEVER: no pending reset */
	struct end e[2];
	struct dir d[2];
};

struct bucket {
	double tokens, burst;
	int64_t last;
};

static int epfd = -1, listen_fd = -1, sig_fd = -1;
static struct conn *conns_head, *conns_tail;
static int nconns;
static unsigned next_id = 1;
static struct bucket buckets[2];
static int64_t accept_paused_until = 0;
static bool listen_registered;
static unsigned char readbuf[READ_CHUNK];
/* distinct addresses used as epoll tags */
static char tag_listen, tag_signal;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void vlog(const char *fmt, ...)
{
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --listen ADDR:PORT --target ADDR:PORT --delay-ms N [options]\n"
		"TCP relay that delays every byte by N ms in each direction (RTT +2N ms).\n"
		"  --listen ADDR:PORT        address to accept on (e.g. 127.0.0.1:8080, [::1]:8080)\n"
		"  --target ADDR:PORT        where each accepted connection is forwarded\n"
		"  --delay-ms N              one-way delay added in each direction (0: none)\n"
		"  --rate-mbit R             token-bucket rate limit per direction, all connections\n"
		"                            together (default: unlimited)\n"
		"  --max-conns N             concurrent connections (default 1024)\n"
		"  --max-buffer-mib N        data held per direction and connection before\n"
		"                            reading stops (default 16)\n"
		"  --connect-timeout-ms N    give up connecting to the target after N ms\n"
		"                            (default: the kernel's, about 2 minutes)\n"
		"  --no-handshake-delay      connect to the target at once instead of after\n"
		"                            3 x delay (emulated TCP handshake)\n"
		"  -v, --verbose             log connections to stderr\n"
		"  -h, --help                this help\n"
		"Runs in the foreground; exits on SIGTERM or SIGINT.\n",
		prog);
}

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see --help)\n");
	va_end(ap);
	exit(2);
}

static long long parse_int(const char *opt, const char *s, long long min, long long max)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		usage_error("%s: expected an integer from %lld to %lld, got '%s'", opt, min, max, s);
	return v;
}

static void parse_addr(const char *opt, const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1])
		usage_error("%s: expected ADDR:PORT, got '%s'", opt, s);
	size_t hl = (size_t)(colon - s);
	const char *h = s;
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']')
			usage_error("%s: expected [IPV6]:PORT, got '%s'", opt, s);
		h = s + 1;
		hl -= 2;
	}
	if (hl >= sizeof host)
		usage_error("%s: address too long: '%s'", opt, s);
	memcpy(host, h, hl);
	host[hl] = 0;
	long long port = parse_int(opt, colon + 1, 0, 65535);
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%lld", port);
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0 || !res)
		usage_error("%s: cannot resolve '%s': %s", opt, host, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
}

static void parse_args(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_TARGET, O_DELAY, O_RATE, O_MAXC, O_BUF, O_CTO, O_NOHS };
	static const struct option opts[] = {
		{"listen", required_argument, 0, O_LISTEN},
		{"target", required_argument, 0, O_TARGET},
		{"delay-ms", required_argument, 0, O_DELAY},
		{"rate-mbit", required_argument, 0, O_RATE},
		{"max-conns", required_argument, 0, O_MAXC},
		{"max-buffer-mib", required_argument, 0, O_BUF},
		{"connect-timeout-ms", required_argument, 0, O_CTO},
		{"no-handshake-delay", no_argument, 0, O_NOHS},
		{"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":hv", opts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: listen_str = optarg; break;
		case O_TARGET: target_str = optarg; break;
		case O_DELAY: delay_ns = parse_int("--delay-ms", optarg, 0, 3600000) * 1000000; break;
		case O_RATE: {
			char *end;
			errno = 0;
			double r = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(r > 0) || r > 1e6)
				usage_error("--rate-mbit: expected a positive number, got '%s'", optarg);
			rate_bytes_per_ns = r * 1e6 / 8 / 1e9;
			break;
		}
		case O_MAXC: max_conns = (int)parse_int("--max-conns", optarg, 1, 1000000); break;
		case O_BUF: max_queue = (size_t)parse_int("--max-buffer-mib", optarg, 1, 4096) << 20; break;
		case O_CTO: connect_timeout_ns = parse_int("--connect-timeout-ms", optarg, 1, 86400000) * 1000000; break;
		case O_NOHS: handshake_delay = false; break;
		case 'v': verbose = 1; break;
		case 'h': usage(stdout); exit(0);
		case ':': usage_error("option '%s' needs a value", argv[optind - 1]); break;
		default:
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!listen_str)
		usage_error("--listen ADDR:PORT is required");
	if (!target_str)
		usage_error("--target ADDR:PORT is required");
	if (delay_ns < 0)
		usage_error("--delay-ms N is required (0 for none)");
	parse_addr("--listen", listen_str, &listen_addr, &listen_len);
	parse_addr("--target", target_str, &target_addr, &target_len);
	if (rate_bytes_per_ns > 0) {
		/* 10 ms worth of tokens, at least 16 KiB */
		double burst = rate_bytes_per_ns * 10e6;
		if (burst < 16384)
			burst = 16384;
		for (int i = 0; i < 2; i++)
			buckets[i] = (struct bucket){.tokens = burst, .burst = burst, .last = now_ns()};
	}
}

/* ---- epoll helpers ---- */
static void ep_set(struct end *e, uint32_t mask)
{
	if (e->fd < 0 || e->hup)
		return;
	if (e->in_epoll && e->mask == mask)
		return;
	struct epoll_event ev = {.events = mask, .data.ptr = e};
	if (!e->in_epoll) {
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ev) < 0)
			die("epoll_ctl(ADD): %s", strerror(errno));
		e->in_epoll = true;
	} else if (epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ev) < 0) {
		die("epoll_ctl(MOD): %s", strerror(errno));
	}
	e->mask = mask;
}

static void ep_del(struct end *e)
{
	if (e->fd >= 0 && e->in_epoll)
		epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
	e->in_epoll = false;
	e->mask = 0;
}

static void set_listen_events(bool want)
{
	if (want == listen_registered)
		return;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
	if (epoll_ctl(epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, listen_fd, &ev) < 0)
		die("epoll_ctl(listen): %s", strerror(errno));
	listen_registered = want;
}

/* ---- connections ---- */
static void dir_clear(struct dir *d)
{
	struct chunk *ch = d->head;
	while (ch) {
		struct chunk *n = ch->next;
		free(ch);
		ch = n;
	}
	d->head = d->tail = NULL;
	d->queued = 0;
}

static void end_close(struct end *e, bool reset)
{
	if (e->fd < 0)
		return;
	ep_del(e);
	if (reset) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(e->fd);
	e->fd = -1;
}

static void conn_free(struct conn *c, bool reset)
{
	vlog("conn %u: closed%s", c->id, reset ? " (reset)" : "");
	for (int i = 0; i < 2; i++) {
		end_close(&c->e[i], reset);
		dir_clear(&c->d[i]);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		conns_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		conns_tail = c->prev;
	free(c);
	nconns--;
}

/* Side i failed (reset, refused, unreachable...): close it now; the other side
 * is reset one delay later, after in-flight data towards it was delivered. */
static void conn_side_failed(struct conn *c, int i, int err, int64_t now)
{
	vlog("conn %u: %s side: %s", c->id, i ? "target" : "client", strerror(err));
	end_close(&c->e[i], true);
	dir_clear(&c->d[1 - i]);   /* data towards side i is lost */
	c->d[1 - i].rd_eof = true; /* and nothing more is read for it */
	c->d[i].rd_eof = true;     /* side i sends nothing more */
	c->d[i].eof_fwd = false;
	if (c->abort_due == NEVER)
		c->abort_due = now + delay_ns;
}

static void start_connect(struct conn *c, int64_t now)
{
	struct end *t = &c->e[1];
	int fd = socket(target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_side_failed(c, 1, errno, now);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	t->fd = fd;
	c->state = ST_CONNECTING;
	if (connect_timeout_ns)
		c->connect_deadline = now + connect_timeout_ns;
	if (connect(fd, (struct sockaddr *)&target_addr, target_len) == 0) {
		c->state = ST_OPEN;
		vlog("conn %u: connected", c->id);
		return;
	}
	if (errno != EINPROGRESS) {
		conn_side_failed(c, 1, errno, now);
		return;
	}
	ep_set(t, EPOLLOUT);
}

static void check_connect(struct conn *c, int64_t now)
{
	struct end *t = &c->e[1];
	if (t->fd < 0)
		return;
	if (t->out_ready || t->hup) {
		int err = 0;
		socklen_t l = sizeof err;
		if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		t->out_ready = false;
		if (err == 0) {
			/* hup without error would be odd; a write/read will tell */
			c->state = ST_OPEN;
			t->wblocked = false;
			vlog("conn %u: connected", c->id);
			return;
		}
		if (err != EINPROGRESS && err != EALREADY) {
			conn_side_failed(c, 1, err, now);
			return;
		}
	}
	if (c->connect_deadline && now >= c->connect_deadline)
		conn_side_failed(c, 1, ETIMEDOUT, now);
}

static void accept_new(int64_t now)
{
	for (int n = 0; n < 64 && nconns < max_conns; n++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				vlog("accept: %s; pausing", strerror(errno));
				accept_paused_until = now + 100000000;
				return;
			}
			continue; /* ECONNABORTED, EPROTO, network errors: next */
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			accept_paused_until = now + 100000000;
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->id = next_id++;
		c->abort_due = NEVER;
		for (int i = 0; i < 2; i++) {
			c->e[i].c = c;
			c->e[i].idx = i;
			c->e[i].fd = -1;
		}
		c->e[0].fd = fd;
		c->state = ST_WAIT;
		c->connect_at = now + (handshake_delay ? 3 * delay_ns : 0);
		c->prev = conns_tail;
		if (conns_tail)
			conns_tail->next = c;
		else
			conns_head = c;
		conns_tail = c;
		nconns++;
		vlog("conn %u: accepted (%d open)", c->id, nconns);
		ep_set(&c->e[0], EPOLLIN);
		if (c->connect_at <= now)
			start_connect(c, now);
	}
}

static bool can_read(struct conn *c, int i)
{
	if (c->e[i].fd < 0 || c->d[i].rd_eof || c->d[i].queued >= max_queue || c->abort_due != NEVER)
		return false;
	if (i == 1 && c->state != ST_OPEN)
		return false;
	return true;
}

static void do_read(struct conn *c, int i, int64_t now)
{
	struct end *e = &c->e[i];
	struct dir *d = &c->d[i];
	for (int n = 0; n < 16 && can_read(c, i); n++) {
		ssize_t r = recv(e->fd, readbuf, sizeof readbuf, 0);
		if (r > 0) {
			struct chunk *ch = malloc(sizeof *ch + (size_t)r);
			if (!ch)
				die("out of memory");
			ch->next = NULL;
			ch->due = now + delay_ns;
			ch->len = (size_t)r;
			ch->off = 0;
			memcpy(ch->data, readbuf, (size_t)r);
			if (d->tail)
				d->tail->next = ch;
			else
				d->head = ch;
			d->tail = ch;
			d->queued += (size_t)r;
			continue;
		}
		if (r == 0) {
			vlog("conn %u: EOF from %s", c->id, i ? "target" : "client");
			d->rd_eof = true;
			d->eof_fwd = true;
			d->eof_due = now + delay_ns;
			e->rd_ready = false;
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			e->rd_ready = false;
			return;
		}
		conn_side_failed(c, i, errno, now);
		return;
	}
}

static void bucket_refill(struct bucket *b, int64_t now)
{
	if (now > b->last) {
		b->tokens += (double)(now - b->last) * rate_bytes_per_ns;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last = now;
	}
}

/* Write due data of direction i to e[1-i]. Returns the next time this
 * direction needs attention (NEVER if only an event can help). */
static int64_t do_write(struct conn *c, int i, int64_t now)
{
	struct dir *d = &c->d[i];
	struct end *dst = &c->e[1 - i];
	if (dst->fd < 0 || (1 - i == 1 && c->state != ST_OPEN))
		return NEVER;
	while (d->head) {
		struct chunk *ch = d->head;
		if (ch->due > now)
			return ch->due;
		if (dst->wblocked)
			return dst->hup ? now + 10000000 : NEVER;
		size_t n = ch->len - ch->off;
		bool limited = false;
		if (rate_bytes_per_ns > 0) {
			struct bucket *b = &buckets[i];
			bucket_refill(b, now);
			size_t want = n < 4096 ? n : 4096;
			if (b->tokens < (double)want)
				return now + 1 + (int64_t)(((double)want - b->tokens) / rate_bytes_per_ns);
			if ((double)n > b->tokens) {
				n = (size_t)b->tokens;
				limited = true;
			}
		}
		ssize_t w = send(dst->fd, ch->data + ch->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				dst->wblocked = true;
				continue;
			}
			conn_side_failed(c, 1 - i, errno, now);
			return NEVER;
		}
		if (rate_bytes_per_ns > 0)
			buckets[i].tokens -= (double)w;
		ch->off += (size_t)w;
		d->queued -= (size_t)w;
		if (ch->off == ch->len) {
			d->head = ch->next;
			if (!d->head)
				d->tail = NULL;
			free(ch);
		} else if ((size_t)w == n && limited) {
			continue; /* the loop waits for more tokens */
		} else {
			dst->wblocked = true; /* short write: send buffer full */
		}
	}
	/* queue empty: forward a pending EOF */
	if (d->eof_fwd && !d->shut) {
		if (d->eof_due > now)
			return d->eof_due;
		shutdown(dst->fd, SHUT_WR);
		d->shut = true;
		vlog("conn %u: EOF forwarded to %s", c->id, i ? "client" : "target");
	}
	return NEVER;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Service one connection. Returns its next wake time; may free it. */
static int64_t service(struct conn *c, int64_t now)
{
	int64_t wake = NEVER;
	if (c->state == ST_WAIT && c->abort_due == NEVER) {
		if (now >= c->connect_at)
			start_connect(c, now);
		else
			wake = c->connect_at;
	}
	if (c->state == ST_CONNECTING) {
		check_connect(c, now);
		if (c->state == ST_CONNECTING && c->connect_deadline)
			wake = min64(wake, c->connect_deadline);
	}
	for (int i = 0; i < 2; i++)
		if (c->e[i].rd_ready && can_read(c, i))
			do_read(c, i, now);
	for (int i = 0; i < 2; i++)
		wake = min64(wake, do_write(c, i, now));
	if (c->abort_due != NEVER) {
		if (now >= c->abort_due) {
			conn_free(c, true);
			return NEVER;
		}
		wake = min64(wake, c->abort_due);
		if (c->e[0].fd < 0 && c->e[1].fd < 0) {
			conn_free(c, true);
			return NEVER;
		}
	}
	if (c->d[0].shut && c->d[1].shut) {
		conn_free(c, false);
		return NEVER;
	}
	/* update epoll interest */
	for (int i = 0; i < 2; i++) {
		struct end *e = &c->e[i];
		if (e->fd < 0)
			continue;
		if (e->hup) {
			/* not in epoll any more: poll it while it has something to do */
			if ((e->rd_ready && can_read(c, i)) || (e->wblocked && c->d[1 - i].head))
				wake = min64(wake, now + 10000000);
			continue;
		}
		uint32_t m = 0;
		if (can_read(c, i))
			m |= EPOLLIN;
		if (e->wblocked || (i == 1 && c->state == ST_CONNECTING))
			m |= EPOLLOUT;
		ep_set(e, m);
	}
	return wake;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
		die("sigprocmask: %s", strerror(errno));
	sig_fd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0)
		die("signalfd: %s", strerror(errno));

	listen_fd = socket(listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(listen_fd, (struct sockaddr *)&listen_addr, listen_len) < 0)
		die("cannot listen on %s: %s", listen_str, strerror(errno));
	if (listen(listen_fd, 1024) < 0)
		die("cannot listen on %s: %s", listen_str, strerror(errno));

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &tag_signal};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, sig_fd, &sev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	set_listen_events(true);
	vlog("relaying %s -> %s, delay %lld ms", listen_str, target_str, (long long)(delay_ns / 1000000));

	struct epoll_event evs[MAX_EVENTS];
	int64_t wake = NEVER;
	for (;;) {
		int64_t now = now_ns();
		int timeout = -1;
		if (wake != NEVER) {
			int64_t dt = wake - now;
			if (dt <= 0)
				timeout = 0;
			else if (dt >= (int64_t)INT_MAX * 1000000)
				timeout = INT_MAX;
			else
				timeout = (int)((dt + 999999) / 1000000); /* round up: never early */
		}
		int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		now = now_ns();
		bool do_accept = false;
		for (int k = 0; k < n; k++) {
			void *p = evs[k].data.ptr;
			uint32_t ev = evs[k].events;
			if (p == &tag_signal) {
				struct signalfd_siginfo si;
				if (read(sig_fd, &si, sizeof si) > 0) {
					vlog("signal %u: exiting", si.ssi_signo);
					while (conns_head)
						conn_free(conns_head, false);
					return 0;
				}
				continue;
			}
			if (p == &tag_listen) {
				do_accept = true;
				continue;
			}
			struct end *e = p;
			if (ev & EPOLLIN)
				e->rd_ready = true;
			if (ev & EPOLLOUT) {
				e->wblocked = false;
				e->out_ready = true;
			}
			if (ev & (EPOLLERR | EPOLLHUP)) {
				/* reported whatever the mask: stop epoll from spinning and
				 * poll this end until its read/write errors or EOFs out */
				ep_del(e);
				e->hup = true;
				e->rd_ready = true;
				e->wblocked = false;
				e->out_ready = true;
			}
		}
		if (do_accept || (accept_paused_until && now >= accept_paused_until)) {
			accept_paused_until = 0;
			accept_new(now);
		}
		wake = NEVER;
		struct conn *c = conns_head;
		while (c) {
			struct conn *next = c->next;
			wake = min64(wake, service(c, now));
			c = next;
		}
		if (rate_bytes_per_ns > 0 && conns_head && conns_head != conns_tail) {
			/* shared token bucket: rotate who is served first */
			struct conn *h = conns_head;
			conns_head = h->next;
			conns_head->prev = NULL;
			h->prev = conns_tail;
			h->next = NULL;
			conns_tail->next = h;
			conns_tail = h;
		}
		bool want_listen = nconns < max_conns && !accept_paused_until;
		set_listen_events(want_listen);
		if (accept_paused_until)
			wake = min64(wake, accept_paused_until);
	}
}
