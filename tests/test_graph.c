/*
 * tests/test_graph.c - objects, the dependency graph, busting by references
 * and marks, on hand-built Osuny-like websites.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "shm.h"
#include "shm_log.h"
#include "testutil.h"

typedef struct fixture {
	char *dir;
	shm_env *env;
	shm_uuid ws;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	shm_options o;

	f->dir = tu_tmpdir();
	shm_options_init(&o);
	if (shm_env_open(f->dir, &o, &f->env) != 0) {
		fprintf(stderr, "open: %s\n", shm_errmsg());
		return -1;
	}
	shm_uuid_parse("0b8e7c52-1111-4222-8333-444455556666", &f->ws);
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

/* deps_set with a NULL-terminated list of dependencies (obj last before
 * them: va_start after a promoted type, bool, is undefined) */
static void declare(fixture *f, bool direct, const char *obj, ...)
{
	const char *deps[32];
	size_t n = 0;
	va_list ap;

	va_start(ap, obj);
	while ((deps[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	int rc = shm_deps_set(f->env, &f->ws, obj, direct, deps, n);
	if (rc)
		fprintf(stderr, "deps_set %s: %s\n", obj, shm_errmsg());
	assert_int_equal(rc, 0);
}

static void put_static(fixture *f, const char *obj)
{
	char content[600];
	snprintf(content, sizeof content, "<html>%s</html>", obj);
	assert_int_equal(shm_static_put(f->env, &f->ws, obj, content,
	                                strlen(content), NULL),
	                 0);
}

static bool has_static(fixture *f, const char *obj)
{
	shm_static *s = NULL;
	int rc = shm_static_peek(f->env, &f->ws, obj, &s);
	assert_true(rc == 0 || rc == SHM_ENOTFOUND);
	shm_static_free(s);
	return rc == 0;
}

static uint64_t next_seq(fixture *f)
{
	shm_info in;
	assert_int_equal(shm_env_info(f->env, &in), 0);
	return in.next_seq;
}

/* "a,b,c": the list joined with commas (sorted lists compare as strings) */
static char *joined(shm_objlist *l)
{
	static char buf[4096];
	buf[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			strcat(buf, ",");
		strcat(buf, l->items[i]);
	}
	free(l);
	return buf;
}

static char *recursive(fixture *f, const char *obj)
{
	shm_objlist *l = NULL;
	assert_int_equal(shm_deps_recursive(f->env, &f->ws, obj, &l), 0);
	return joined(l);
}

static char *referrers(fixture *f, const char *obj)
{
	shm_objlist *l = NULL;
	assert_int_equal(shm_deps_referrers(f->env, &f->ws, obj, &l), 0);
	return joined(l);
}

/* Sorted "obj,obj" of the objects of STATIC_BUST records since seq from,
 * and the number of records of op `count_op` in *n_op. */
static char *busts_since(fixture *f, uint64_t from, int count_op, int *n_op)
{
	static char buf[4096];
	char *items[64];
	size_t n = 0;
	shm_log_iter *it;
	shm_log_rec r;

	*n_op = 0;
	assert_int_equal(shm_log_iter_open(f->env, from, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		if (r.op == count_op)
			(*n_op)++;
		if (r.op != SHM_OP_STATIC_BUST)
			continue;
		assert_true(r.key_len > 16);
		assert_memory_equal(r.key, f->ws.b, 16);
		assert_int_equal(r.payload_len, 0);
		items[n] = strndup((const char *)r.key + 16, r.key_len - 16);
		n++;
	}
	shm_log_iter_close(it);
	for (size_t i = 1; i < n; i++) /* insertion sort */
		for (size_t j = i; j > 0 && strcmp(items[j - 1], items[j]) > 0; j--) {
			char *t = items[j];
			items[j] = items[j - 1];
			items[j - 1] = t;
		}
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(buf, ",");
		strcat(buf, items[i]);
		free(items[i]);
	}
	return buf;
}

/* ---------------------------------------------------------- objects */

static void test_object_check_accepts_type_slash_id(void **state)
{
	(void)state;
	assert_int_equal(shm_object_check("Communication::Website::Post/"
	                                  "0b8e7c52-1111-4222-8333-444455556666"),
	                 0);
	assert_int_equal(shm_object_check("a/b"), 0);
	assert_int_equal(shm_object_check("Media/2024/photo.jpg"), 0);
	assert_int_equal(shm_object_check("Page/\xc3\xa9t\xc3\xa9"), 0);
}

static void test_object_check_refuses_malformed_objects(void **state)
{
	(void)state;
	char longobj[600];
	const char *bad[] = {
		"", "noslash", "/id", "Type/", "Type/ id", "Type/\tid",
		"Type/i\x01d", "Type/i\x7f", "Type/\xc2\xa0x", /* NBSP */
		"Type/\xe2\x80\x83x",                      /* em space */
		"Type/\xff", "Type/\xc3",                  /* bad UTF-8 */
		"Type/\xc0\xaf",                           /* overlong '/' */
		"Type\n/id",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int rc = shm_object_check(bad[i]);
		if (rc != SHM_EOBJECT)
			fprintf(stderr, "accepted bad object #%zu\n", i);
		assert_int_equal(rc, SHM_EOBJECT);
		assert_non_null(strstr(shm_errmsg(), "object"));
	}
	/* NULL is no object but a missing argument (shm.h's Conventions) */
	assert_int_equal(shm_object_check(NULL), SHM_EINVAL);
	memset(longobj, 'x', sizeof longobj - 1);
	longobj[sizeof longobj - 1] = '\0';
	longobj[3] = '/';
	assert_int_equal(shm_object_check(longobj), SHM_EOBJECT);
	/* not scanned to its end: no length is made up for it */
	assert_non_null(strstr(shm_errmsg(), "longer than the 486 bytes allowed"));
	/* the longest that fits the L1 index still passes */
	longobj[486] = '\0';
	assert_int_equal(shm_object_check(longobj), 0);
	longobj[486] = 'x';
	longobj[487] = '\0';
	assert_int_equal(shm_object_check(longobj), SHM_EOBJECT);
}

/* Occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void test_object_errors_show_bad_bytes_escaped(void **state)
{
	(void)state;
	assert_int_equal(shm_object_check("Page/\xff\xc3\xa9t\xc3"), SHM_EOBJECT);
	assert_non_null(strstr(shm_errmsg(), "'Page/\\xff\xc3\xa9t\\xc3'"));
	assert_int_equal(shm_object_check("Page/a\tb\x7f"), SHM_EOBJECT);
	assert_non_null(strstr(shm_errmsg(), "'Page/a\\x09b\\x7f'"));
	for (const char *p = shm_errmsg(); *p; p++)
		assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void test_longest_object_can_be_stored_and_busted(void **state)
{
	fixture *f = *state;
	char obj[487];
	memset(obj, 'y', 486);
	obj[486] = '\0';
	obj[4] = '/';
	put_static(f, obj);
	assert_true(has_static(f, obj));
	declare(f, true, obj, "Block/1", NULL);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Block/1"), 0);
	assert_false(has_static(f, obj));
}

static void test_bad_input_is_refused_and_changes_nothing(void **state)
{
	fixture *f = *state;
	shm_uuid nil = {{0}};
	const char *deps[] = {"Person/1", "bad dep/2"};
	uint64_t seq;
	shm_info before, after;
	shm_objlist *l = NULL;

	declare(f, true, "Page/about", "Block/1", NULL);
	seq = next_seq(f);
	assert_int_equal(shm_env_info(f->env, &before), 0);

	assert_int_equal(shm_deps_set(f->env, &f->ws, "Page/about", true, deps, 2),
	                 SHM_EOBJECT);
	assert_non_null(strstr(shm_errmsg(), "bad dep/2"));
	assert_int_equal(count_of(shm_errmsg(), shm_strerror(SHM_EOBJECT)), 1);
	assert_int_equal(shm_deps_set(f->env, &f->ws, "Page about", true, deps, 1),
	                 SHM_EOBJECT);
	assert_non_null(strstr(shm_errmsg(), "Page about"));
	assert_int_equal(shm_deps_set(f->env, &nil, "Page/about", true, deps, 1),
	                 SHM_EUUID);
	assert_int_equal(shm_deps_set(f->env, NULL, "Page/about", true, deps, 1),
	                 SHM_EINVAL);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/"), SHM_EOBJECT);
	assert_int_equal(shm_object_save(f->env, &nil, "Page/about"), SHM_EUUID);
	assert_int_equal(shm_object_destroy(f->env, &f->ws, "nope"), SHM_EOBJECT);
	assert_int_equal(shm_static_bust(f->env, &f->ws, "x/y z"), SHM_EOBJECT);
	assert_int_equal(shm_static_put(f->env, &f->ws, "x/\x01", "a", 1, NULL),
	                 SHM_EOBJECT);
	assert_int_equal(shm_static_put(f->env, &nil, "x/y", "a", 1, NULL),
	                 SHM_EUUID);
	assert_int_equal(shm_deps_recursive(f->env, &f->ws, "", &l), SHM_EOBJECT);
	assert_null(l);

	assert_int_equal(next_seq(f), seq);
	assert_int_equal(shm_env_info(f->env, &after), 0);
	assert_int_equal(after.graph_objects, before.graph_objects);
	assert_int_equal(after.marks, before.marks);
	assert_int_equal(after.statics, before.statics);
	assert_string_equal(recursive(f, "Page/about"), "Block/1");
}

/* An object listed among its own dependencies would be a stored edge that
 * every listing hides (item 0 of a walk is the object itself): refused,
 * naming it, the graph unchanged. */
static void test_an_object_depending_on_itself_is_refused(void **state)
{
	fixture *f = *state;
	const char *deps[] = {"Block/2", "Page/1"};
	shm_objlist *l = NULL;
	shm_info before, after;
	uint64_t seq;

	declare(f, true, "Page/1", "Block/1", NULL);
	seq = next_seq(f);
	assert_int_equal(shm_env_info(f->env, &before), 0);
	assert_int_equal(shm_deps_set(f->env, &f->ws, "Page/1", true, deps, 2),
	                 SHM_EINVAL);
	if (!strstr(shm_errmsg(), "object 'Page/1': dependency 1 is the "
	            "object itself"))
		fail_msg("'%s'", shm_errmsg());
	assert_int_equal(next_seq(f), seq);
	assert_int_equal(shm_env_info(f->env, &after), 0);
	assert_int_equal(after.graph_objects, before.graph_objects);
	assert_int_equal(shm_deps_get(f->env, &f->ws, "Page/1", &l), 0);
	assert_string_equal(joined(l), "Block/1");
	assert_string_equal(referrers(f, "Page/1"), "");
}

/* ------------------------------------------------------------ walks */

static void test_deps_set_replaces_direct_dependencies(void **state)
{
	fixture *f = *state;
	shm_objlist *l = NULL;

	declare(f, true, "Page/p", "Block/a", "Block/b", "Block/a", NULL);
	assert_int_equal(shm_deps_get(f->env, &f->ws, "Page/p", &l), 0);
	assert_string_equal(joined(l), "Block/a,Block/b");
	declare(f, true, "Page/p", "Block/b", "Block/c", NULL);
	assert_int_equal(shm_deps_get(f->env, &f->ws, "Page/p", &l), 0);
	assert_string_equal(joined(l), "Block/b,Block/c");
	assert_string_equal(referrers(f, "Block/a"), "");
	assert_string_equal(referrers(f, "Block/c"), "Page/p");
	declare(f, true, "Page/p", NULL);
	assert_string_equal(recursive(f, "Page/p"), "");
	assert_string_equal(referrers(f, "Block/b"), "");
}

static void test_recursive_deps_go_through_indirect_and_stop_at_direct(void **state)
{
	fixture *f = *state;

	/* page embeds a block showing a person and a post; the post shows
	 * its author: the author is the post's business, not the page's */
	declare(f, true, "Page/p", "Block/b", NULL);
	declare(f, false, "Block/b", "Person/x", "Post/q", NULL);
	declare(f, true, "Post/q", "Person/y", NULL);
	declare(f, false, "Person/x", "Organization/o", NULL);
	assert_string_equal(recursive(f, "Page/p"),
	                    "Block/b,Organization/o,Person/x,Post/q");
	assert_string_equal(recursive(f, "Post/q"), "Person/y");
	assert_string_equal(recursive(f, "Organization/o"), "");
}

static void test_recursive_deps_cut_cycles(void **state)
{
	fixture *f = *state;

	declare(f, false, "Block/a", "Block/b", NULL);
	declare(f, false, "Block/b", "Block/a", "Person/z", NULL);
	declare(f, true, "Page/p", "Block/a", NULL);
	assert_string_equal(recursive(f, "Page/p"), "Block/a,Block/b,Person/z");
	/* the start object is excluded even when the cycle comes back to it */
	assert_string_equal(recursive(f, "Block/a"), "Block/b,Person/z");
	/* direct objects in a cycle: included, not expanded */
	declare(f, true, "Page/x", "Page/y", NULL);
	declare(f, true, "Page/y", "Page/x", "Block/a", NULL);
	assert_string_equal(recursive(f, "Page/x"), "Page/y");
	assert_string_equal(referrers(f, "Page/x"), "Page/y");
}

static void test_website_object_is_direct_without_declaration(void **state)
{
	fixture *f = *state;
	bool direct = false;
	char obj[80];

	snprintf(obj, sizeof obj, "Communication::Website/%s",
	         "0b8e7c52-1111-4222-8333-444455556666");
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, obj, &direct), 0);
	assert_true(direct);
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, "Person/x", &direct),
	                 0);
	assert_false(direct);
	declare(f, true, "Page/p", NULL);
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, "Page/p", &direct), 0);
	assert_true(direct);
	/* the website embeds its about; the about's block reaches the site */
	declare(f, true, obj, "Page/about", NULL);
	declare(f, true, "Page/about", "Block/1", NULL);
	assert_string_equal(referrers(f, "Block/1"), "Page/about");
	assert_string_equal(referrers(f, "Page/about"), obj);
}

/* Sets the stored direct byte of object as an older libshm could leave it
 * (it accepted a website declared indirect). */
static void store_direct_byte(fixture *f, const char *obj, uint8_t direct)
{
	uint8_t key[SHM_OBJKEY_MAX];
	size_t klen;
	MDB_txn *txn;

	assert_int_equal(shm__objkey("test", &f->ws, obj, key, &klen), 0);
	MDB_val k = {klen, key}, v = {1, &direct};
	assert_int_equal(mdb_txn_begin(f->env->mdb, NULL, 0, &txn), 0);
	assert_int_equal(mdb_put(txn, f->env->obj, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/*
 * Every Communication::Website object is direct by its type, as Osuny's
 * websites are (Website#is_direct_object?) and as the connection cleanup
 * takes them: another website embedded in a page too, declared or not. It
 * used to be indirect unless declared direct, so the page's recursive
 * dependencies went on through it to what that website shows (Person/3),
 * while the cleanup stopped there and gave the page no such connection.
 */
static void test_every_website_object_is_direct(void **state)
{
	fixture *f = *state;
	const char *other =
		"Communication::Website/99999999-1111-4222-8333-444455556666";
	const char *own =
		"Communication::Website/0B8E7C52-1111-4222-8333-444455556666";
	const char *deps[] = {"Person/3"};
	bool direct = false;
	shm_objlist *l = NULL;
	uint64_t seq;

	assert_int_equal(shm_object_is_direct(f->env, &f->ws, other, &direct),
	                 0);
	assert_true(direct);
	/* declared indirect: refused, saying why, nothing written */
	seq = next_seq(f);
	assert_int_equal(shm_deps_set(f->env, &f->ws, other, false, deps, 1),
	                 SHM_EINVAL);
	assert_string_equal(shm_errmsg(),
	                    "object 'Communication::Website/99999999-1111-4222-"
	                    "8333-444455556666': a website is always direct "
	                    "(every Communication::Website object is): declare "
	                    "it direct (invalid argument)");
	assert_int_equal(shm_deps_set(f->env, &f->ws, own, false, NULL, 0),
	                 SHM_EINVAL);
	assert_int_equal(next_seq(f), seq);
	assert_int_equal(shm_deps_get(f->env, &f->ws, other, &l), 0);
	assert_int_equal(l->n, 0);
	free(l);
	/* a TYPE that only begins so is not a website */
	assert_int_equal(shm_object_is_direct(f->env, &f->ws,
	                                      "Communication::Website/x/1",
	                                      &direct),
	                 0);
	assert_false(direct);

	/* a page shows the other website, which shows a person */
	declare(f, true, "Page/p", other, NULL);
	declare(f, true, other, "Person/3", NULL);
	assert_string_equal(recursive(f, "Page/p"), other);
	assert_string_equal(recursive(f, other), "Person/3");
	assert_string_equal(referrers(f, "Person/3"), other);
	/* saving the person busts the website showing it, not the page */
	put_static(f, "Page/p");
	put_static(f, other);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Person/3"), 0);
	assert_false(has_static(f, other));
	assert_true(has_static(f, "Page/p"));

	/* stored indirect by an older libshm: direct all the same */
	store_direct_byte(f, other, 0);
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, other, &direct),
	                 0);
	assert_true(direct);
	assert_string_equal(recursive(f, "Page/p"), other);
	assert_string_equal(referrers(f, "Person/3"), other);
}

/* A UUID has no case (PostgreSQL's uuid columns, where the flusher mirrors
 * the graph and Osuny keeps its connections): an ID in upper case is the
 * lower-case object, for every function, and lists and log records name it
 * in lower case. */
static void test_uuid_ids_in_either_case_are_one_object(void **state)
{
	fixture *f = *state;
	const char *page_up = "Page/C0FFEE00-0000-4000-8000-0000000000AB";
	const char *page = "Page/c0ffee00-0000-4000-8000-0000000000ab";
	const char *person_up = "Person/C0FFEE00-0000-4000-8000-0000000000CD";
	const char *person = "Person/c0ffee00-0000-4000-8000-0000000000cd";
	const char *site_up =
		"Communication::Website/0B8E7C52-1111-4222-8333-444455556666";
	const char *site =
		"Communication::Website/0b8e7c52-1111-4222-8333-444455556666";
	shm_objlist *l = NULL;
	shm_info in;
	bool direct = false;
	uint64_t seq = next_seq(f);
	int n_marks;

	declare(f, true, page_up, person, NULL);
	declare(f, true, site_up, page, NULL);
	assert_string_equal(recursive(f, page), person);
	assert_string_equal(referrers(f, person_up), page);
	assert_string_equal(referrers(f, page_up), site);
	assert_int_equal(shm_deps_get(f->env, &f->ws, site, &l), 0);
	assert_string_equal(joined(l), page);
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, site_up, &direct),
	                 0);
	assert_true(direct);
	/* declared again in the other case: replaced, not a second object */
	declare(f, true, page, person_up, "Block/1", NULL);
	assert_int_equal(shm_deps_get(f->env, &f->ws, page_up, &l), 0);
	assert_string_equal(joined(l), "Block/1,Person/c0ffee00-0000-4000-8000-"
	                               "0000000000cd");
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.graph_objects, 2);

	/* a static put in one case is the other's; saving the person in
	 * upper case busts the page that embeds it in lower case */
	put_static(f, page);
	assert_true(has_static(f, page_up));
	assert_int_equal(shm_object_save(f->env, &f->ws, person_up), 0);
	assert_false(has_static(f, page));
	assert_string_equal(busts_since(f, seq, SHM_OP_MARK, &n_marks),
	                    "Page/c0ffee00-0000-4000-8000-0000000000ab,"
	                    "Person/c0ffee00-0000-4000-8000-0000000000cd");
	assert_int_equal(n_marks, 1);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.marks, 1);
	/* ids of other forms are text: these are three objects */
	declare(f, true, "Page/C0FFEE00000040008000000000000AB", NULL);
	declare(f, true, "Page/{c0ffee00-0000-4000-8000-0000000000ab}", NULL);
	declare(f, true, "Page/X", NULL);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.graph_objects, 5);
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, "Page/x", &direct),
	                 0);
	assert_false(direct);
}

/* The object among its own dependencies in the other case is the object
 * itself: refused like it, naming both spellings, nothing changed. */
static void test_an_object_depending_on_itself_in_other_case_is_refused(
	void **state)
{
	fixture *f = *state;
	const char *deps[] = {"Page/C0FFEE00-0000-4000-8000-0000000000AB"};
	shm_info before, after;
	uint64_t seq;

	declare(f, true, "Page/c0ffee00-0000-4000-8000-0000000000ab", "Block/1",
	        NULL);
	seq = next_seq(f);
	assert_int_equal(shm_env_info(f->env, &before), 0);
	assert_int_equal(shm_deps_set(f->env, &f->ws,
	                              "Page/c0ffee00-0000-4000-8000-0000000000ab",
	                              true, deps, 1),
	                 SHM_EINVAL);
	if (!strstr(shm_errmsg(), "object 'Page/c0ffee00-0000-4000-8000-"
	            "0000000000ab': dependency 0 ('Page/C0FFEE00-0000-4000-"
	            "8000-0000000000AB', the same UUID in other case) is the "
	            "object itself"))
		fail_msg("'%s'", shm_errmsg());
	assert_int_equal(next_seq(f), seq);
	assert_int_equal(shm_env_info(f->env, &after), 0);
	assert_int_equal(after.graph_objects, before.graph_objects);
	assert_string_equal(recursive(f, deps[0]), "Block/1");
}

static void test_graphs_are_separate_per_website(void **state)
{
	fixture *f = *state;
	shm_uuid other;
	shm_objlist *l = NULL;

	shm_uuid_parse("99999999-1111-4222-8333-444455556666", &other);
	declare(f, true, "Page/p", "Block/b", NULL);
	assert_int_equal(shm_deps_recursive(f->env, &other, "Page/p", &l), 0);
	assert_int_equal(l->n, 0);
	free(l);
	put_static(f, "Page/p");
	assert_int_equal(shm_object_save(f->env, &other, "Block/b"), 0);
	assert_true(has_static(f, "Page/p"));
}

/* ----------------------------------------------------------- busting */

static void test_saving_a_block_busts_itself_and_its_about(void **state)
{
	fixture *f = *state;
	int n;

	declare(f, true, "Page/about", "Block/hero", "Block/text", NULL);
	declare(f, false, "Block/hero", "Media/photo", NULL);
	declare(f, true, "Page/other", "Block/other", NULL);
	const char *all[] = {"Page/about", "Block/hero", "Block/text",
	                     "Media/photo", "Page/other", "Block/other"};
	for (size_t i = 0; i < 6; i++)
		put_static(f, all[i]);
	uint64_t from = next_seq(f);

	assert_int_equal(shm_object_save(f->env, &f->ws, "Block/hero"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Block/hero,Page/about");
	assert_int_equal(n, 1);
	assert_false(has_static(f, "Block/hero"));
	assert_false(has_static(f, "Page/about"));
	assert_true(has_static(f, "Block/text"));
	assert_true(has_static(f, "Media/photo"));
	assert_true(has_static(f, "Page/other"));
	assert_true(has_static(f, "Block/other"));
}

/*
 * A person shown by a block of a page, by a block of a post, and as the
 * author of another post; a page lists both posts. Saving the person busts
 * the person, both blocks, the page with the block and both posts, and not
 * the listing page (it shows the posts' titles, not the person).
 */
static void test_saving_a_person_busts_blocks_pages_and_posts_not_listings(void **state)
{
	fixture *f = *state;
	int n;

	declare(f, true, "Page/team", "Block/b1", NULL);
	declare(f, false, "Block/b1", "Person/ada", NULL);
	declare(f, true, "Post/news", "Block/b2", NULL);
	declare(f, false, "Block/b2", "Person/ada", "Organization/acme", NULL);
	declare(f, true, "Post/interview", "Person/ada", NULL);
	declare(f, true, "Page/blog", "Post/news", "Post/interview", NULL);
	declare(f, true, "Page/unrelated", "Person/bob", NULL);
	const char *all[] = {"Page/team",      "Block/b1",  "Post/news",
	                     "Block/b2",       "Person/ada", "Post/interview",
	                     "Page/blog",      "Page/unrelated", "Person/bob",
	                     "Organization/acme"};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		put_static(f, all[i]);
	assert_string_equal(referrers(f, "Person/ada"),
	                    "Block/b1,Block/b2,Page/team,Post/interview,Post/news");
	uint64_t from = next_seq(f);

	assert_int_equal(shm_object_save(f->env, &f->ws, "Person/ada"), 0);
	assert_string_equal(
	        busts_since(f, from, SHM_OP_MARK, &n),
	        "Block/b1,Block/b2,Page/team,Person/ada,Post/interview,Post/news");
	assert_int_equal(n, 1);
	for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
		bool busted = strstr("Page/team Block/b1 Post/news Block/b2 "
		                     "Person/ada Post/interview",
		                     all[i]) != NULL;
		assert_int_equal(has_static(f, all[i]), !busted);
	}
	/* saving a post busts the listing page, which shows its title */
	from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Post/news"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Page/blog,Post/news");
	assert_false(has_static(f, "Page/blog"));
}

static void test_shared_person_busts_every_page_showing_it(void **state)
{
	fixture *f = *state;
	int n;

	declare(f, true, "Page/a", "Block/a", NULL);
	declare(f, true, "Page/b", "Block/b", NULL);
	declare(f, true, "Post/c", "Person/shared", NULL);
	declare(f, false, "Block/a", "Person/shared", NULL);
	declare(f, false, "Block/b", "Person/shared", "Person/other", NULL);
	uint64_t from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Person/shared"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Block/a,Block/b,Page/a,Page/b,Person/shared,Post/c");
	from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Person/other"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Block/b,Page/b,Person/other");
}

static void test_cycle_between_direct_objects_busts_each_once(void **state)
{
	fixture *f = *state;
	int n;

	declare(f, true, "Page/a", "Page/b", NULL);
	declare(f, true, "Page/b", "Page/a", NULL);
	declare(f, true, "Page/c", "Page/a", NULL);
	put_static(f, "Page/a");
	put_static(f, "Page/b");
	put_static(f, "Page/c");
	uint64_t from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/a"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Page/a,Page/b,Page/c");
	from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/b"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Page/a,Page/b");
	/* an indirect cycle is walked once too */
	declare(f, false, "Block/x", "Block/y", NULL);
	declare(f, false, "Block/y", "Block/x", NULL);
	declare(f, true, "Page/d", "Block/y", NULL);
	from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Block/x"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n),
	                    "Block/x,Block/y,Page/d");
}

static void test_unknown_object_save_busts_itself_only(void **state)
{
	fixture *f = *state;
	int n;

	put_static(f, "Page/lonely");
	uint64_t from = next_seq(f);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/lonely"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n), "Page/lonely");
	assert_int_equal(n, 1);
	assert_false(has_static(f, "Page/lonely"));
}

static void test_bust_busts_the_object_alone_without_mark(void **state)
{
	fixture *f = *state;
	int n;
	shm_info in;

	declare(f, true, "Page/a", "Block/a", NULL);
	put_static(f, "Page/a");
	put_static(f, "Block/a");
	uint64_t from = next_seq(f);
	assert_int_equal(shm_static_bust(f->env, &f->ws, "Block/a"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n), "Block/a");
	assert_int_equal(n, 0);
	assert_true(has_static(f, "Page/a"));
	assert_false(has_static(f, "Block/a"));
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.marks, 0);
	/* busting what is not cached still tells L2: one record */
	from = next_seq(f);
	assert_int_equal(shm_static_bust(f->env, &f->ws, "Block/a"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_MARK, &n), "Block/a");
}

static void test_destroy_busts_references_and_drops_edges(void **state)
{
	fixture *f = *state;
	bool direct = true;
	int n;
	shm_objlist *l = NULL;
	shm_info in;

	declare(f, true, "Page/about", "Block/b", NULL);
	declare(f, false, "Block/b", "Person/x", NULL);
	put_static(f, "Page/about");
	put_static(f, "Block/b");
	uint64_t from = next_seq(f);

	assert_int_equal(shm_object_destroy(f->env, &f->ws, "Block/b"), 0);
	assert_string_equal(busts_since(f, from, SHM_OP_GRAPH_DROP, &n),
	                    "Block/b,Page/about");
	assert_int_equal(n, 1);
	assert_false(has_static(f, "Page/about"));
	assert_string_equal(referrers(f, "Person/x"), "");
	assert_int_equal(shm_deps_get(f->env, &f->ws, "Page/about", &l), 0);
	assert_int_equal(l->n, 0);
	free(l);
	assert_string_equal(recursive(f, "Block/b"), "");
	assert_int_equal(shm_object_is_direct(f->env, &f->ws, "Block/b", &direct),
	                 0);
	assert_false(direct);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.graph_objects, 1); /* Page/about */
	assert_int_equal(in.marks, 1);
}

/* An L1 mark lives until every sink has its MARK record (the trim): the
 * cleanup reads PostgreSQL's shm_marks. A later mark of the object, not yet
 * trimmed, survives the trim of the earlier one. */
static void test_trim_drops_marks_the_sinks_have(void **state)
{
	fixture *f = *state;
	shm_info in;

	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/a"), 0);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Page/b"), 0);
	uint64_t first = next_seq(f) - 1;
	usleep(2000); /* a mark's time is the write's, in microseconds */
	assert_int_equal(shm_object_destroy(f->env, &f->ws, "Page/a"), 0);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.marks, 2);
	assert_int_equal(shm_log_trim(f->env, first), 0);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.marks, 1); /* Page/a's destroy, not yet mirrored */
	assert_int_equal(shm_log_trim(f->env, next_seq(f) - 1), 0);
	assert_int_equal(shm_env_info(f->env, &in), 0);
	assert_int_equal(in.marks, 0);
}

/* ------------------------------------------------------- log records */

static void test_each_graph_write_appends_its_log_records(void **state)
{
	fixture *f = *state;
	shm_log_iter *it;
	shm_log_rec r;
	uint64_t from = next_seq(f);
	int ops[16], n = 0;

	declare(f, true, "Page/p", "Block/b", "Person/long-name", NULL);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Block/b"), 0);
	assert_int_equal(shm_object_destroy(f->env, &f->ws, "Block/b"), 0);
	assert_int_equal(shm_static_bust(f->env, &f->ws, "Page/p"), 0);

	assert_int_equal(shm_log_iter_open(f->env, from, &it), 0);
	while (shm_log_iter_next(it, &r) == 0) {
		assert_true(n < 16);
		ops[n++] = r.op;
		assert_memory_equal(r.key, f->ws.b, 16);
		if (r.op == SHM_OP_GRAPH_SET) {
			static const uint8_t want[] =
			        "\x01\x02\x00\x00\x00"
			        "\x07\x00" "Block/b"
			        "\x10\x00" "Person/long-name";
			assert_int_equal(r.key_len, 16 + 6);
			assert_memory_equal(r.key + 16, "Page/p", 6);
			assert_int_equal(r.payload_len, sizeof want - 1);
			assert_memory_equal(r.payload, want, sizeof want - 1);
		} else if (r.op == SHM_OP_MARK) {
			assert_int_equal(r.payload_len, 1);
			assert_memory_equal(r.key + 16, "Block/b", 7);
		} else if (r.op == SHM_OP_GRAPH_DROP) {
			assert_int_equal(r.payload_len, 0);
			assert_memory_equal(r.key + 16, "Block/b", 7);
		}
	}
	shm_log_iter_close(it);
	/* deps_set; save: 2 busts + mark(1); destroy: 2 busts + mark(2) +
	 * drop; bust: 1 */
	int want[] = {SHM_OP_GRAPH_SET,   SHM_OP_STATIC_BUST, SHM_OP_STATIC_BUST,
	              SHM_OP_MARK,        SHM_OP_STATIC_BUST, SHM_OP_STATIC_BUST,
	              SHM_OP_MARK,        SHM_OP_GRAPH_DROP,  SHM_OP_STATIC_BUST};
	assert_int_equal(n, sizeof want / sizeof *want);
	for (int i = 0; i < n; i++)
		assert_int_equal(ops[i], want[i]);
}

static void test_counters_count_busts_and_marks(void **state)
{
	fixture *f = *state;
	shm_counters c;

	declare(f, true, "Page/p", "Block/b", NULL);
	assert_int_equal(shm_object_save(f->env, &f->ws, "Block/b"), 0);
	assert_int_equal(shm_static_bust(f->env, &f->ws, "Page/p"), 0);
	shm_stats_local(f->env, &c);
	assert_int_equal(c.busts, 3);
	assert_int_equal(c.marks, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_check_accepts_type_slash_id),
		cmocka_unit_test(test_object_check_refuses_malformed_objects),
		cmocka_unit_test(test_object_errors_show_bad_bytes_escaped),
		T(test_longest_object_can_be_stored_and_busted),
		T(test_bad_input_is_refused_and_changes_nothing),
		T(test_an_object_depending_on_itself_is_refused),
		T(test_deps_set_replaces_direct_dependencies),
		T(test_recursive_deps_go_through_indirect_and_stop_at_direct),
		T(test_recursive_deps_cut_cycles),
		T(test_website_object_is_direct_without_declaration),
		T(test_every_website_object_is_direct),
		T(test_graphs_are_separate_per_website),
		T(test_uuid_ids_in_either_case_are_one_object),
		T(test_an_object_depending_on_itself_in_other_case_is_refused),
		T(test_saving_a_block_busts_itself_and_its_about),
		T(test_saving_a_person_busts_blocks_pages_and_posts_not_listings),
		T(test_shared_person_busts_every_page_showing_it),
		T(test_cycle_between_direct_objects_busts_each_once),
		T(test_unknown_object_save_busts_itself_only),
		T(test_bust_busts_the_object_alone_without_mark),
		T(test_destroy_busts_references_and_drops_edges),
		T(test_trim_drops_marks_the_sinks_have),
		T(test_each_graph_write_appends_its_log_records),
		T(test_counters_count_busts_and_marks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
