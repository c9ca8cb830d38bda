/* tests/testutil.c - helpers shared by the cmocka tests. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <lmdb.h>

#include "internal.h"
#include "shm_log.h"
#include "testutil.h"

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/shmtest.XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

void tu_rmdir(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

shm_env *tu_open(const char *dir, const shm_options *opt)
{
	shm_env *env = NULL;
	int rc = shm_env_open(dir, opt, &env);
	if (rc)
		fprintf(stderr, "shm_env_open(%s): %s\n", dir, shm_errmsg());
	assert_int_equal(rc, 0);
	assert_non_null(env);
	return env;
}

shm_msg tu_msg(const char *room, int32_t user, const char *content)
{
	shm_msg m;
	memset(&m, 0, sizeof m);
	m.room_id = room;
	m.user_id = user;
	m.username = "alice";
	m.content = content;
	m.content_len = (uint32_t)strlen(content);
	m.type = SHM_MSG_TEXT;
	return m;
}

uint64_t tu_log_count(shm_env *env)
{
	shm_log_iter *it;
	shm_log_rec rec;
	uint64_t n = 0;
	int rc;

	assert_int_equal(shm_log_iter_open(env, 0, &it), 0);
	while ((rc = shm_log_iter_next(it, &rec)) == 0)
		n++;
	assert_int_equal(rc, SHM_ENOTFOUND);
	shm_log_iter_close(it);
	return n;
}

size_t tu_stored_map_size(const char *dir)
{
	MDB_env *e;
	MDB_envinfo ei;

	assert_false(shm__env_open_here(dir)); /* LMDB: once per process */
	assert_int_equal(mdb_env_create(&e), 0);
	assert_int_equal(mdb_env_set_maxdbs(e, 16), 0);
	assert_int_equal(mdb_env_open(e, dir, MDB_RDONLY, 0664), 0);
	assert_int_equal(mdb_env_info(e, &ei), 0);
	mdb_env_close(e);
	return ei.me_mapsize;
}

static void print_problem(const char *problem, void *user)
{
	(void)user;
	fprintf(stderr, "verify: %s\n", problem);
}

unsigned tu_lines_with(const char *path, const char *s)
{
	char line[2048];
	unsigned n = 0;
	FILE *f = fopen(path, "r");

	while (f && fgets(line, sizeof line, f))
		n += strstr(line, s) != NULL;
	if (f)
		fclose(f);
	return n;
}

size_t tu_verify(shm_env *env)
{
	size_t problems = 0;
	assert_int_equal(shm_verify(env, print_problem, NULL, &problems), 0);
	return problems;
}

/* Every field of a equals b's, content_hash included. */
void tu_assert_msg_equal(const shm_msg *a, const shm_msg *b)
{
	assert_memory_equal(a->id.b, b->id.b, 16);
	assert_string_equal(a->room_id, b->room_id);
	assert_int_equal(a->user_id, b->user_id);
	assert_string_equal(a->username, b->username);
	assert_int_equal(a->content_len, b->content_len);
	assert_memory_equal(a->content, b->content, a->content_len);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->created_at, b->created_at);
	assert_int_equal(a->updated_at, b->updated_at);
	assert_int_equal(a->edited, b->edited);
	assert_int_equal(a->edit_count, b->edit_count);
	assert_int_equal(a->n_reactions, b->n_reactions);
	for (uint32_t i = 0; i < a->n_reactions; i++) {
		assert_string_equal(a->reactions[i].emoji, b->reactions[i].emoji);
		assert_int_equal(a->reactions[i].n_users, b->reactions[i].n_users);
		assert_memory_equal(a->reactions[i].user_ids,
		                    b->reactions[i].user_ids,
		                    a->reactions[i].n_users * sizeof(int32_t));
	}
	assert_int_equal(a->n_mentions, b->n_mentions);
	if (a->n_mentions)
		assert_memory_equal(a->mentions, b->mentions,
		                    a->n_mentions * sizeof(int32_t));
	assert_int_equal(a->n_attachments, b->n_attachments);
	for (uint32_t i = 0; i < a->n_attachments; i++) {
		const shm_attachment *x = &a->attachments[i], *y = &b->attachments[i];
		assert_memory_equal(x->id.b, y->id.b, 16);
		assert_string_equal(x->filename, y->filename);
		assert_string_equal(x->content_type, y->content_type);
		assert_int_equal(x->size, y->size);
		assert_string_equal(x->url, y->url);
	}
	assert_int_equal(a->reply_count, b->reply_count);
	assert_int_equal(a->last_reply_at, b->last_reply_at);
	assert_int_equal(a->content_hash, b->content_hash);
	assert_int_equal(a->has_parent, b->has_parent);
	if (a->has_parent)
		assert_memory_equal(a->parent_id.b, b->parent_id.b, 16);
	assert_int_equal(a->has_thread, b->has_thread);
	if (a->has_thread)
		assert_memory_equal(a->thread_id.b, b->thread_id.b, 16);
}

/* Children (writers, flushers) still running: a failed assertion leaves a
 * test early, and the teardown stops them so nothing outlives it. */
static pid_t children[64];

void tu_child_add(pid_t pid)
{
	for (int i = 0; i < 64; i++)
		if (!children[i]) {
			children[i] = pid;
			return;
		}
}

void tu_child_del(pid_t pid)
{
	for (int i = 0; i < 64; i++)
		if (children[i] == pid)
			children[i] = 0;
}

void tu_children_stop(void (*stop)(pid_t pid))
{
	for (int i = 0; i < 64; i++) {
		pid_t pid = children[i];
		if (!pid)
			continue;
		children[i] = 0;
		if (stop) {
			stop(pid);
		} else {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
}

void tu_redis_url_with_auth(const char *base, const char *user,
                            const char *password, char *out, size_t outlen)
{
	shm_redis_addr a;

	assert_int_equal(shm_redis_url_parse(base, &a), 0);
	if (a.unix_socket)
		snprintf(out, outlen, "unix://%s:%s@%s", user, password, a.host);
	else
		snprintf(out, outlen, "redis://%s:%s@%s:%d", user, password,
		         a.host, a.port);
}

pid_t tu_redis_start(const char *dir, const char *const *args, char *url,
                     size_t urllen)
{
	char sock[4200], log[4200];
	const char *argv[48];
	int n = 0;

	snprintf(sock, sizeof sock, "%s/redis.sock", dir);
	snprintf(log, sizeof log, "%s/redis.log", dir);
	const char *fixed[] = {"redis-server", "--port", "0", "--unixsocket",
	                       sock, "--save", "", "--appendonly", "no",
	                       "--dir", dir, "--logfile", log, NULL};
	for (int i = 0; fixed[i]; i++)
		argv[n++] = fixed[i];
	for (int i = 0; args && args[i] && n < 47; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	tu_child_add(pid);
	/* ready once it answers anything (NOAUTH under requirepass) */
	for (int i = 0; i < 200; i++) {
		redisContext *c = redisConnectUnix(sock);
		redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
		bool up = r != NULL;
		if (r)
			freeReplyObject(r);
		if (c)
			redisFree(c);
		if (up) {
			snprintf(url, urllen, "unix://%s", sock);
			return pid;
		}
		assert_int_equal(waitpid(pid, NULL, WNOHANG), 0); /* alive */
		tu_sleep_ms(25);
	}
	fail_msg("redis-server in %s did not answer", dir);
	return -1;
}

int tu_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

int tu_harness(const char *fn)
{
	char cmd[2048];
	const char *top = getenv("SHM_TOP");

	snprintf(cmd, sizeof cmd, ". \"%s/tests/harness/servers.sh\" && %s "
	         ">/dev/null 2>&1", top ? top : ".", fn);
	return system(cmd);
}

void tu_redis_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	tu_child_del(pid);
}

/* ------------------------------------------------------------ PostgreSQL */

void tu_pg_ts(int64_t us, char *out)
{
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(out, 64, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

void tu_pg_put(PGconn *c, const shm_msg *m)
{
	char *json;
	assert_int_equal(shm_msg_to_json(m, &json, NULL), 0);
	const char *p[1] = {json};
	PGresult *r = PQexecParams(
		c,
		"INSERT INTO messages (id, room_id, user_id, username, content,"
		" message_type, created_at, updated_at, metadata, content_hash,"
		" parent_id, thread_id)"
		" SELECT (d->>'id')::uuid, d->>'room_id', (d->>'user_id')::integer,"
		" d->>'username', d->>'content', d->>'message_type',"
		" (d->>'created_at')::timestamptz, (d->>'updated_at')::timestamptz,"
		" d->'metadata', d->>'content_hash', (d->>'parent_id')::uuid,"
		" (d->>'thread_id')::uuid FROM (SELECT $1::jsonb AS d) s"
		" ON CONFLICT (id) DO UPDATE SET room_id = EXCLUDED.room_id,"
		" content = EXCLUDED.content, message_type = EXCLUDED.message_type,"
		" created_at = EXCLUDED.created_at,"
		" updated_at = EXCLUDED.updated_at, metadata = EXCLUDED.metadata,"
		" content_hash = EXCLUDED.content_hash",
		1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("insert: %s", PQerrorMessage(c));
	PQclear(r);
	free(json);
}

size_t tu_pg_page_before(PGconn *c, const char *room, int64_t before,
                         const shm_uuid *before_id, uint32_t limit,
                         shm_uuid *ids)
{
	char b[64], l[16], id[37] = "00000000-0000-0000-0000-000000000000";
	const char *p[4] = {room, b, l, id};
	if (before)
		tu_pg_ts(before, b);
	else
		snprintf(b, sizeof b, "infinity");
	if (before_id)
		shm_uuid_format(before_id, id);
	snprintf(l, sizeof l, "%u", limit);
	/* messages.id: a bare id would be the output column, id::text */
	PGresult *r = PQexecParams(
		c,
		"SELECT id::text FROM messages WHERE room_id = $1 AND "
		"(created_at < $2::timestamptz OR (created_at = $2::timestamptz "
		"AND id < $4::uuid)) ORDER BY created_at DESC, messages.id DESC "
		"LIMIT $3::int",
		4, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("page: %s", PQerrorMessage(c));
	size_t n = (size_t)PQntuples(r);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(shm_uuid_parse(PQgetvalue(r, (int)i, 0), &ids[i]),
		                 0);
	PQclear(r);
	return n;
}

size_t tu_pg_page(PGconn *c, const char *room, int64_t before,
                  uint32_t limit, shm_uuid *ids)
{
	return tu_pg_page_before(c, room, before, NULL, limit, ids);
}

char *tu_env_after_many_commits(void)
{
	char *dir = tu_tmpdir(), content[600];
	shm_env *env = tu_open(dir, NULL);

	memset(content, 'c', sizeof content - 1);
	content[sizeof content - 1] = '\0';
	for (int i = 0; i < 400; i++) {
		shm_msg m = tu_msg(i % 2 ? "odd" : "even", i, content);
		assert_int_equal(shm_msg_put(env, &m), 0);
		if (i % 3 == 0)
			assert_int_equal(shm_msg_delete(env, &m.id), 0);
	}
	shm_env_close(env);
	return dir;
}

/* Page p's header names it: a parse of LMDB's meta that found a page. */
static void assert_page_is(int fd, uint64_t p, unsigned psize)
{
	uint64_t pgno;

	if (p == SHM__NO_PAGE)
		return;
	assert_int_equal(pread(fd, &pgno, 8, (off_t)(p * psize)), 8);
	assert_int_equal(pgno, p);
}

off_t tu_cut_at_highest_root(const char *dir)
{
	char path[4200], name[64];
	shm_options ro;
	shm__lmdb_meta m;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_txn *txn;
	MDB_val k, v;
	MDB_dbi dbi;
	uint64_t high, in_use, db[5];
	int fd;

	shm_options_init(&ro);
	ro.read_only = true;
	shm_env *env = tu_open(dir, &ro);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(shm__lmdb_meta_read(env, txn, &m), 0);
	assert_true(m.found); /* a meta page with the txnid of txn's snapshot */
	assert_page_is(fd, m.free_root, m.psize);
	assert_page_is(fd, m.main_root, m.psize);
	high = m.free_root == SHM__NO_PAGE ? 0 : m.free_root;
	if (m.main_root != SHM__NO_PAGE && m.main_root > high)
		high = m.main_root;
	assert_int_equal(mdb_stat(txn, 1, &st), 0);
	in_use = 2 + st.ms_branch_pages + st.ms_leaf_pages +
	         st.ms_overflow_pages;
	/* the named databases: an MDB_db each, after u32 pad, u16 flags and
	 * u16 depth its branch, leaf and overflow pages, entries and root,
	 * as mdb_stat counts them */
	assert_int_equal(mdb_cursor_open(txn, 1, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		assert_int_equal(v.mv_size, 48);
		memcpy(db, (char *)v.mv_data + 8, sizeof db);
		snprintf(name, sizeof name, "%.*s", (int)k.mv_size,
		         (char *)k.mv_data);
		assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
		assert_int_equal(mdb_stat(txn, dbi, &st), 0);
		assert_int_equal(db[0], st.ms_branch_pages);
		assert_int_equal(db[1], st.ms_leaf_pages);
		assert_int_equal(db[2], st.ms_overflow_pages);
		assert_int_equal(db[3], st.ms_entries);
		assert_page_is(fd, db[4], m.psize);
		if (db[4] != SHM__NO_PAGE && db[4] > high)
			high = db[4];
		in_use += db[0] + db[1] + db[2];
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	shm_env_close(env);
	close(fd);
	if (in_use > high)
		fprintf(stderr, "%s: %llu pages in use, the highest root is "
		        "page %llu: a cut there is no test of the roots\n", dir,
		        (unsigned long long)in_use, (unsigned long long)high);
	assert_true(in_use <= high);
	assert_int_equal(truncate(path, (off_t)(high * m.psize)), 0);
	return (off_t)(high * m.psize);
}

void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}
