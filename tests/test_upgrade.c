/* tests/test_upgrade.c - shm__upgrade (libshm/upgrade.c, shmctl upgrade):
 * what an older libshm stored in a form libshm no longer reads (a UUID ID
 * in upper case, a website declared indirect), forged here with raw LMDB
 * writes as that libshm left it, is rewritten in one transaction: verify
 * is clean after, the graph reads as declared, the records the flusher
 * needs are logged (and it mirrors them into PostgreSQL), and a second run
 * does nothing. A run that fails partway (a write of LMDB's failing at any
 * point, a full map) changes nothing at all. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"
#include "flusher_test.h"

static const char *WEB = "8c5e1ab0-6d0a-4c5c-9b61-2f6a0e1d5a11";
#define UP(t, x) t "/C0FFEE00-0000-4000-8000-0000000000" x
#define LOW(t, x) t "/c0ffee00-0000-4000-8000-0000000000" x
static const char SITE[] =
	"Communication::Website/0b8e7c52-1111-4222-8333-444455556666";

typedef struct fixture {
	char *dir;
	shm_env *env;
	shm_uuid w;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);

	f->dir = tu_tmpdir();
	f->env = tu_open(f->dir, NULL);
	assert_int_equal(shm_uuid_parse(WEB, &f->w), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	shm_env_close(f->env);
	tu_rmdir(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Puts (website + obj, as given) -> v into dbi, as an older libshm did. */
static void legacy_put(fixture *f, MDB_dbi dbi, const char *obj,
                       const void *v, size_t vlen)
{
	uint8_t key[SHM_OBJKEY_MAX];
	MDB_txn *txn;

	memcpy(key, f->w.b, 16);
	memcpy(key + 16, obj, strlen(obj));
	MDB_val k = {16 + strlen(obj), key}, d = {vlen, (void *)v};
	assert_int_equal(mdb_txn_begin(f->env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* obj embeds dep, both as given: the edge and its mirror. */
static void legacy_edge(fixture *f, const char *obj, const char *dep)
{
	legacy_put(f, f->env->dep, obj, dep, strlen(dep));
	legacy_put(f, f->env->ref, dep, obj, strlen(obj));
}

/* Moves the static of obj (lower case) to obj_up's key, lru key too. */
static void legacy_static(fixture *f, const char *obj, const char *obj_up)
{
	uint8_t key[SHM_OBJKEY_MAX], up[SHM_OBJKEY_MAX], lk[9 + SHM_OBJKEY_MAX];
	uint8_t lval[64];
	size_t klen;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v, lv, lkv = {0, lk};
	shm_static *s;
	int op = MDB_FIRST;

	assert_int_equal(shm_static_put(f->env, &f->w, obj, "x", 1, &s), 0);
	shm_static_free(s);
	assert_int_equal(shm__objkey("test", &f->w, obj, key, &klen), 0);
	memcpy(up, key, 16);
	memcpy(up + 16, obj_up, klen - 16);
	assert_int_equal(mdb_txn_begin(f->env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_cursor_open(txn, f->env->lru, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, op) == 0) {
		op = MDB_NEXT;
		if (k.mv_size == 9 + klen && !memcmp((uint8_t *)k.mv_data + 9,
		                                     key, klen)) {
			memcpy(lk, k.mv_data, k.mv_size);
			lkv.mv_size = k.mv_size;
			memcpy(lval, v.mv_data, v.mv_size);
			lv = (MDB_val){v.mv_size, lval};
		}
	}
	mdb_cursor_close(cur);
	assert_int_not_equal(lkv.mv_size, 0);
	assert_int_equal(mdb_del(txn, f->env->lru, &lkv, NULL), 0);
	memcpy(lk + 9, up, klen);
	assert_int_equal(mdb_put(txn, f->env->lru, &lkv, &lv, 0), 0);
	k = (MDB_val){klen, key};
	assert_int_equal(mdb_get(txn, f->env->stat, &k, &v), 0);
	MDB_val uk = {klen, up};
	assert_int_equal(mdb_put(txn, f->env->stat, &uk, &v, 0), 0);
	assert_int_equal(mdb_del(txn, f->env->stat, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

static size_t verify(fixture *f)
{
	size_t n = 99;

	assert_int_equal(shm_verify(f->env, NULL, NULL, &n), 0);
	return n;
}

static uint64_t next_seq(fixture *f)
{
	shm_info in;

	assert_int_equal(shm_env_info(f->env, &in), 0);
	return in.next_seq;
}

/* The objects of l, comma-separated, into a static buffer; frees l. */
static const char *joined(shm_objlist *l)
{
	static char buf[1024];

	buf[0] = '\0';
	for (size_t i = 0; i < l->n; i++)
		snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s",
		         i ? "," : "", l->items[i]);
	free(l);
	return buf;
}

static const char *deps_of(fixture *f, const char *obj)
{
	shm_objlist *l;

	assert_int_equal(shm_deps_get(f->env, &f->w, obj, &l), 0);
	return joined(l);
}

static const char *referrers(fixture *f, const char *obj)
{
	shm_objlist *l;

	assert_int_equal(shm_deps_referrers(f->env, &f->w, obj, &l), 0);
	return joined(l);
}

/* What the test below describes, as an older libshm left it; the log
 * trimmed (flushed). */
static void forge_every_kind(fixture *f)
{
	const char *b9[] = {"Block/b9"}, *px[] = {"Person/x"};
	uint8_t one = 1, zero = 0, mark[9] = {[8] = 1};

	legacy_put(f, f->env->obj, UP("Page", "AB"), &one, 1);
	legacy_edge(f, UP("Page", "AB"), UP("Person", "CD"));
	assert_int_equal(shm_deps_set(f->env, &f->w, "Block/b1", false, px, 1),
	                 0);
	legacy_edge(f, "Block/b1", UP("Person", "CD"));
	legacy_put(f, f->env->obj, UP("Post", "EF"), &one, 1);
	legacy_edge(f, UP("Post", "EF"), "Block/b8");
	assert_int_equal(shm_deps_set(f->env, &f->w, LOW("Post", "ef"), true,
	                              b9, 1), 0);
	assert_int_equal(shm_deps_set(f->env, &f->w, SITE, true,
	                              (const char *[]){LOW("Page", "ab")}, 1),
	                 0);
	legacy_put(f, f->env->obj, SITE, &zero, 1);
	legacy_static(f, LOW("Page", "ab"), UP("Page", "AB"));
	legacy_put(f, f->env->mark, UP("Person", "CD"), mark, sizeof mark);
	shm_log_trim(f->env, next_seq(f) - 1);
}

/*
 * Every kind an older libshm left: a page and its person in upper case;
 * a block declared since in lower case whose old edge names the person in
 * upper case; a post in upper case declared again since in lower case
 * (the lower-case declaration stands); a website stored indirect; a static
 * and a mark under an upper-case key. Before shm__upgrade, no reader
 * reached them and no function could drop them (every one lowers its
 * argument).
 */
static void test_upgrade_rewrites_what_an_older_libshm_stored(void **state)
{
	fixture *f = *state;
	shm__upgraded u;
	shm_log_iter *it;
	shm_log_rec r;
	bool direct = false;

	forge_every_kind(f);
	/* unreachable: the person reaches neither the page nor the block */
	assert_string_equal(referrers(f, LOW("Person", "cd")), "");
	assert_string_equal(referrers(f, "Block/b8"), UP("Post", "EF"));
	assert_int_equal(verify(f), 7);

	uint64_t from = next_seq(f);
	assert_int_equal(shm__upgrade(f->env, &u), 0);
	assert_int_equal(u.declared, 3); /* the page, the block, the site */
	assert_int_equal(u.dropped, 1);  /* the post's old spelling */
	assert_int_equal(u.statics, 1);
	assert_int_equal(u.marks, 1);
	assert_int_equal(verify(f), 0);

	assert_string_equal(deps_of(f, LOW("Page", "ab")), LOW("Person", "cd"));
	assert_int_equal(shm_object_is_direct(f->env, &f->w, LOW("Page", "ab"),
	                                      &direct), 0);
	assert_true(direct);
	assert_string_equal(deps_of(f, "Block/b1"),
	                    "Person/c0ffee00-0000-4000-8000-0000000000cd,"
	                    "Person/x");
	assert_int_equal(shm_object_is_direct(f->env, &f->w, "Block/b1",
	                                      &direct), 0);
	assert_false(direct);
	assert_string_equal(referrers(f, LOW("Person", "cd")),
	                    "Block/b1,Page/c0ffee00-0000-4000-8000-0000000000ab");
	assert_string_equal(deps_of(f, LOW("Post", "ef")), "Block/b9");
	assert_string_equal(referrers(f, "Block/b8"), "");
	assert_string_equal(deps_of(f, SITE), LOW("Page", "ab"));

	/* one GRAPH_SET per object declared again, the site's direct; the
	 * static's bust under its own key; nothing under an old key else */
	int sets = 0, busts = 0;
	assert_int_equal(shm_log_iter_open(f->env, from, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		const char *o = (const char *)r.key + 16;
		int ol = (int)r.key_len - 16;
		if (r.op == SHM_OP_STATIC_BUST) {
			assert_int_equal(ol, strlen(UP("Page", "AB")));
			assert_memory_equal(o, UP("Page", "AB"), ol);
			busts++;
			continue;
		}
		assert_int_equal(r.op, SHM_OP_GRAPH_SET);
		sets++;
		if (ol == (int)strlen(SITE) && !memcmp(o, SITE, ol))
			assert_int_equal(((const uint8_t *)r.payload)[0], 1);
		else
			assert_true((ol == (int)strlen(LOW("Page", "ab")) &&
			             !memcmp(o, LOW("Page", "ab"), ol)) ||
			            (ol == 8 && !memcmp(o, "Block/b1", 8)));
	}
	shm_log_iter_close(it);
	assert_int_equal(sets, 3);
	assert_int_equal(busts, 1);

	/* nothing left to do */
	from = next_seq(f);
	assert_int_equal(shm__upgrade(f->env, &u), 0);
	assert_int_equal(u.declared + u.dropped + u.statics + u.marks, 0);
	assert_int_equal(next_seq(f), from);
}

/* A clean environment (UUID ids given in upper case now are stored in
 * lower case) has nothing to upgrade, and the run writes no record. */
static void test_upgrade_of_a_clean_environment_does_nothing(void **state)
{
	fixture *f = *state;
	const char *deps[] = {UP("Person", "CD")};
	shm__upgraded u;

	assert_int_equal(shm_deps_set(f->env, &f->w, UP("Page", "AB"), true,
	                              deps, 1), 0);
	assert_int_equal(shm_object_save(f->env, &f->w, UP("Person", "CD")), 0);
	uint64_t from = next_seq(f);
	assert_int_equal(shm__upgrade(f->env, &u), 0);
	assert_int_equal(u.declared + u.dropped + u.statics + u.marks, 0);
	assert_int_equal(next_seq(f), from);
	assert_int_equal(verify(f), 0);
}

/* The flusher mirrors what the upgrade logs: PostgreSQL gets the page in
 * lower case, direct, embedding the person in lower case, and nothing in
 * upper case (the old entry is dropped from L1 without a record). */
static void test_flusher_mirrors_the_upgrade(void **state)
{
	FT_NEED_SERVERS();
	fixture f = {.dir = tu_tmpdir()};
	uint8_t one = 1;
	shm__upgraded u;

	ft_reset_servers();
	f.env = tu_open(f.dir, NULL);
	assert_int_equal(shm_uuid_parse(WEB, &f.w), 0);
	legacy_put(&f, f.env->obj, UP("Page", "AB"), &one, 1);
	legacy_edge(&f, UP("Page", "AB"), UP("Person", "CD"));
	assert_int_equal(shm__upgrade(f.env, &u), 0);
	assert_int_equal(u.declared, 1);
	shm_env_close(f.env);
	assert_int_equal(ft_flush_once(f.dir, NULL), 0);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_objects WHERE "
	                            "object_type = 'Page' AND object_id = "
	                            "'c0ffee00-0000-4000-8000-0000000000ab' "
	                            "AND direct"), 1);
	assert_int_equal(ft_sql_int("SELECT count(*) FROM shm_edges WHERE "
	                            "object_id = 'c0ffee00-0000-4000-8000-"
	                            "0000000000ab' AND dep_type = 'Person' AND "
	                            "dep_id = 'c0ffee00-0000-4000-8000-"
	                            "0000000000cd'"), 1);
	assert_int_equal(ft_sql_int("SELECT (SELECT count(*) FROM shm_objects)"
	                            " + (SELECT count(*) FROM shm_edges)"), 2);
	ft_rmdir(f.dir);
	free(f.dir);
}

/* ------------------------------------------------ failing partway */

/* LMDB's writes as this binary sees them: while armed, mdb_put and mdb_del
 * (libshm's calls come here before LMDB's) are counted, the fail_at-th
 * fails with MDB_TXN_FULL (LMDB's answer to a transaction too big), and
 * those that found the map full are counted; with fail_commit, a commit
 * fails with EIO (a disk that cannot be written), its transaction aborted
 * as LMDB's failing commit does. */
static struct {
	bool armed, fail_commit;
	unsigned calls, fail_at, map_full;
} inj;

int mdb_txn_commit(MDB_txn *txn)
{
	static int (*real)(MDB_txn *);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "mdb_txn_commit");
	if (inj.armed && inj.fail_commit) {
		mdb_txn_abort(txn);
		return EIO;
	}
	return real(txn);
}

static int injected(int rc)
{
	if (rc == MDB_MAP_FULL)
		inj.map_full++;
	return rc;
}

int mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d,
            unsigned flags)
{
	static int (*real)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *, unsigned);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "mdb_put");
	if (!inj.armed)
		return real(txn, dbi, k, d, flags);
	if (++inj.calls == inj.fail_at)
		return MDB_TXN_FULL;
	return injected(real(txn, dbi, k, d, flags));
}

int mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *d)
{
	static int (*real)(MDB_txn *, MDB_dbi, MDB_val *, MDB_val *);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "mdb_del");
	if (!inj.armed)
		return real(txn, dbi, k, d);
	if (++inj.calls == inj.fail_at)
		return MDB_TXN_FULL;
	return injected(real(txn, dbi, k, d));
}

/* What every database of the environment holds: entries and a hash of
 * their keys and values, per database. */
#define N_DBS 13
typedef struct snap {
	size_t n[N_DBS];
	uint64_t h[N_DBS];
} snap;

static const char *const db_names[N_DBS] = {
	"meta", "msg", "room", "roomwm", "lru", "log", "dead", "stat",
	"lease", "obj", "dep", "ref", "mark"};

static snap snapshot(shm_env *env)
{
	const MDB_dbi dbs[N_DBS] = {env->meta, env->msg, env->room, env->roomwm,
	                            env->lru, env->log, env->dead, env->stat,
	                            env->lease, env->obj, env->dep, env->ref,
	                            env->mark};
	snap s = {{0}, {0}};
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;

	assert_int_equal(mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn), 0);
	for (int i = 0; i < N_DBS; i++) {
		XXH64_state_t *x = XXH64_createState();
		XXH64_reset(x, 0);
		assert_int_equal(mdb_cursor_open(txn, dbs[i], &cur), 0);
		for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0;
		     op = MDB_NEXT) {
			XXH64_update(x, &k.mv_size, sizeof k.mv_size);
			XXH64_update(x, k.mv_data, k.mv_size);
			XXH64_update(x, &v.mv_size, sizeof v.mv_size);
			XXH64_update(x, v.mv_data, v.mv_size);
			s.n[i]++;
		}
		mdb_cursor_close(cur);
		s.h[i] = XXH64_digest(x);
		XXH64_freeState(x);
	}
	mdb_txn_abort(txn);
	return s;
}

static void assert_unchanged(const snap *before, shm_env *env,
                             const char *after_what)
{
	snap now = snapshot(env);

	for (int i = 0; i < N_DBS; i++)
		if (now.n[i] != before->n[i] || now.h[i] != before->h[i])
			fail_msg("%s: database '%s' changed (%zu entries, "
			         "were %zu)", after_what, db_names[i], now.n[i],
			         before->n[i]);
}

/*
 * The upgrade of every kind, with its commit failing (EIO), then with
 * LMDB's k-th write of the upgrade failing, for every k up to the run that
 * makes them all: each failing run returns LMDB's error with its text
 * (what failed, then why) and changes nothing (the same entries, byte
 * for byte, in every database; verify finds the same problems); the run
 * without a failure does it all.
 */
static void test_upgrade_failing_at_any_write_changes_nothing(void **state)
{
	fixture *f = *state;
	shm__upgraded u;
	unsigned k;
	char what[64];

	forge_every_kind(f);
	const snap before = snapshot(f->env);
	assert_int_equal(verify(f), 7);
	inj = (__typeof__(inj)){.armed = true, .fail_commit = true};
	assert_int_equal(shm__upgrade(f->env, &u), EIO);
	inj.armed = false;
	/* the file; no cause told (the disk has room, no size limit) */
	assert_non_null(strstr(shm_errmsg(), "/data.mdb: commit not written, "
	                       "nothing of it stored (Input/output error)"));
	assert_unchanged(&before, f->env, "the commit failing");
	assert_int_equal(verify(f), 7);
	for (k = 1;; k++) {
		inj = (__typeof__(inj)){.armed = true, .fail_at = k};
		int rc = shm__upgrade(f->env, &u);
		inj.armed = false;
		if (rc == 0)
			break;
		/* what failed, then LMDB's text: "lru delete: MDB_TXN_FULL..." */
		const char *e = strstr(shm_errmsg(), mdb_strerror(MDB_TXN_FULL));
		if (rc != MDB_TXN_FULL || !e || e - shm_errmsg() < 3)
			fail_msg("write %u failing: rc %d, '%s'", k, rc,
			         shm_errmsg());
		snprintf(what, sizeof what, "write %u failing", k);
		assert_unchanged(&before, f->env, what);
		assert_int_equal(verify(f), 7);
	}
	fprintf(stderr, "the upgrade makes %u writes; each failing changed "
	        "nothing\n", inj.calls);
	assert_int_equal(inj.calls, k - 1);
	assert_true(k > 10);
	assert_int_equal(u.declared, 3);
	assert_int_equal(u.dropped, 1);
	assert_int_equal(u.statics, 1);
	assert_int_equal(u.marks, 1);
	assert_int_equal(verify(f), 0);
}

/* shmctl -e dir upgrade: its exit status; its stderr into err. */
static int shmctl_upgrade(const char *dir, char *err, size_t cap)
{
	char bin[PATH_MAX + 16], exe[PATH_MAX];
	const char *s = getenv("SHMCTL");
	int p[2], st;
	ssize_t n, len = 0;

	if (s && *s) {
		snprintf(bin, sizeof bin, "%s", s);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		assert_true(n > 0);
		exe[n] = 0;
		snprintf(bin, sizeof bin, "%s/../bin/shmctl", dirname(exe));
	}
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execl(bin, "shmctl", "-e", dir, "upgrade", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], err + len, cap - 1 - (size_t)len)) > 0)
		len += n;
	err[len] = 0;
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * 300 pages and persons an older libshm stored in upper case, in a 1 MiB
 * map then filled with unflushed messages: the upgrade's own writes find
 * the map full partway; it fails with SHM_EFULL saying so (and shmctl
 * upgrade exits 70 with that text) and changes nothing. Once the
 * messages are flushed (evictable), it goes through.
 */
static void test_upgrade_in_a_full_map_changes_nothing(void **state)
{
	fixture f = {.dir = tu_tmpdir()};
	shm_options o;
	shm__upgraded u;
	char obj[128], dep[128], err[2048];
	uint8_t one = 1;
	static char text[2001];
	int rc, puts = 0;

	shm_options_init(&o);
	o.map_size = SHM_MAP_SIZE_MIN;
	f.env = tu_open(f.dir, &o);
	assert_int_equal(shm_uuid_parse(WEB, &f.w), 0);
	for (int i = 0; i < 300; i++) {
		snprintf(obj, sizeof obj, "Page/C0FFEE00-0000-4000-8000-%012X", i);
		snprintf(dep, sizeof dep, "Person/C0FFEE00-0000-4000-9000-%012X",
		         i);
		legacy_put(&f, f.env->obj, obj, &one, 1);
		legacy_edge(&f, obj, dep);
	}
	memset(text, 'x', sizeof text - 1);
	do {
		shm_msg m = tu_msg("full", 1, text);
		rc = shm_msg_put(f.env, &m);
		puts++;
	} while (rc == 0);
	assert_int_equal(rc, SHM_EFULL);
	fprintf(stderr, "%d messages fill the map\n", puts - 1);
	const snap before = snapshot(f.env);
	const size_t problems = verify(&f);
	assert_true(problems >= 300);

	inj = (__typeof__(inj)){.armed = true};
	rc = shm__upgrade(f.env, &u);
	inj.armed = false;
	fprintf(stderr, "upgrade: rc %d, %u of its writes found the map full: "
	        "%s\n", rc, inj.map_full, shm_errmsg());
	assert_int_equal(rc, SHM_EFULL);
	assert_true(inj.map_full > 0); /* partway, not at the commit */
	assert_non_null(strstr(shm_errmsg(), "is full of unflushed work"));
	assert_unchanged(&before, f.env, "upgrade in a full map");
	assert_int_equal(verify(&f), problems);

	assert_int_equal(shmctl_upgrade(f.dir, err, sizeof err), 70);
	fprintf(stderr, "shmctl upgrade: %s", err);
	assert_non_null(strstr(err, "shmctl: map of 1048576 bytes is full of "
	                            "unflushed work"));
	assert_unchanged(&before, f.env, "shmctl upgrade in a full map");

	shm_info in;
	assert_int_equal(shm_env_info(f.env, &in), 0);
	assert_int_equal(shm_log_trim(f.env, in.log_last), 0);
	assert_int_equal(shm__upgrade(f.env, &u), 0);
	assert_int_equal(u.declared, 300);
	assert_int_equal(verify(&f), 0);
	shm_env_close(f.env);
	tu_rmdir(f.dir);
	free(f.dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_upgrade_rewrites_what_an_older_libshm_stored, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_upgrade_of_a_clean_environment_does_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_upgrade_failing_at_any_write_changes_nothing, setup,
			teardown),
		cmocka_unit_test(test_upgrade_in_a_full_map_changes_nothing),
		cmocka_unit_test_teardown(test_flusher_mirrors_the_upgrade,
		                          ft_teardown),
	};
	return cmocka_run_group_tests(tests, ft_group_setup, NULL);
}
