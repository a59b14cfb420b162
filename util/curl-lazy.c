/* libcurl, loaded the first time it is used.
 *
 * Linked normally, libcurl brings 30 more shared libraries (TLS, Kerberos,
 * LDAP, SSH, IDN...) into every process of the hiberbox binary: 4-5 ms of
 * start-up on the project's VM, paid by each CLI command, each FUSE mount
 * process and each daemon child, though most of them never speak HTTP.  So
 * the binary is linked against these forwarding functions instead, which
 * dlopen libcurl.so.4 on the first call.  Callers see the ordinary API: if
 * the library cannot be loaded, init functions return NULL and the others a
 * failure code, which every caller already handles.
 *
 * The definitions stay hidden (-fvisibility=hidden): exported, they could
 * take the place of libcurl's own symbols inside libcurl. */
#define CURL_DISABLE_TYPECHECK /* the setopt/getinfo type-check macros */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#include "util/curl-lazy.h"
#include "util/dl-bind.h"

static struct {
	CURLcode (*global_init)(long);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
	CURLSHcode (*share_cleanup)(CURLSH *);
	time_t (*getdate)(const char *, const time_t *);
} fn;

static const struct dl_sym syms[] = {
	{ (void **)&fn.global_init, "curl_global_init" },
	{ (void **)&fn.global_cleanup, "curl_global_cleanup" },
	{ (void **)&fn.easy_init, "curl_easy_init" },
	{ (void **)&fn.easy_setopt, "curl_easy_setopt" },
	{ (void **)&fn.easy_perform, "curl_easy_perform" },
	{ (void **)&fn.easy_getinfo, "curl_easy_getinfo" },
	{ (void **)&fn.easy_cleanup, "curl_easy_cleanup" },
	{ (void **)&fn.easy_reset, "curl_easy_reset" },
	{ (void **)&fn.easy_strerror, "curl_easy_strerror" },
	{ (void **)&fn.slist_append, "curl_slist_append" },
	{ (void **)&fn.slist_free_all, "curl_slist_free_all" },
	{ (void **)&fn.share_init, "curl_share_init" },
	{ (void **)&fn.share_setopt, "curl_share_setopt" },
	{ (void **)&fn.share_cleanup, "curl_share_cleanup" },
	{ (void **)&fn.getdate, "curl_getdate" },
};
DL_LAZY(libcurl, "libcurl.so.4", syms);

static bool ready(void)
{
	return dl_lazy_ready(&libcurl);
}

const char *curl_lazy_error(void)
{
	return ready() ? NULL : libcurl.error;
}

CURLcode curl_global_init(long flags)
{
	return ready() ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

void curl_global_cleanup(void)
{
	if (ready())
		fn.global_cleanup();
}

CURL *curl_easy_init(void)
{
	return ready() ? fn.easy_init() : NULL;
}

/* The value's type follows from the option's range, as in libcurl. */
CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;
	CURLcode r;

	if (!ready())
		return CURLE_FAILED_INIT;
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		r = fn.easy_setopt(h, opt, va_arg(ap, long));
	else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
		r = fn.easy_setopt(h, opt, va_arg(ap, void *));
	else if (opt < CURLOPTTYPE_OFF_T)
		r = fn.easy_setopt(h, opt, va_arg(ap, void (*)(void)));
	else if (opt < CURLOPTTYPE_BLOB)
		r = fn.easy_setopt(h, opt, va_arg(ap, curl_off_t));
	else
		r = fn.easy_setopt(h, opt, va_arg(ap, void *));
	va_end(ap);
	return r;
}

CURLcode curl_easy_perform(CURL *h)
{
	return ready() ? fn.easy_perform(h) : CURLE_FAILED_INIT;
}

/* Every info is returned through a pointer. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	va_list ap;
	CURLcode r;

	if (!ready())
		return CURLE_FAILED_INIT;
	va_start(ap, info);
	r = fn.easy_getinfo(h, info, va_arg(ap, void *));
	va_end(ap);
	return r;
}

void curl_easy_cleanup(CURL *h)
{
	if (ready())
		fn.easy_cleanup(h);
}

void curl_easy_reset(CURL *h)
{
	if (ready())
		fn.easy_reset(h);
}

const char *curl_easy_strerror(CURLcode code)
{
	return ready() ? fn.easy_strerror(code) : "libcurl could not be loaded";
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
	return ready() ? fn.slist_append(l, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *l)
{
	if (l && ready())
		fn.slist_free_all(l);
}

CURLSH *curl_share_init(void)
{
	return ready() ? fn.share_init() : NULL;
}

/* SHARE/UNSHARE take an int (curl_lock_data), the lock callbacks a function,
 * USERDATA a pointer. */
CURLSHcode curl_share_setopt(CURLSH *sh, CURLSHoption opt, ...)
{
	va_list ap;
	CURLSHcode r;

	if (!ready())
		return CURLSHE_NOT_BUILT_IN;
	va_start(ap, opt);
	if (opt == CURLSHOPT_SHARE || opt == CURLSHOPT_UNSHARE)
		r = fn.share_setopt(sh, opt, va_arg(ap, int));
	else if (opt == CURLSHOPT_LOCKFUNC || opt == CURLSHOPT_UNLOCKFUNC)
		r = fn.share_setopt(sh, opt, va_arg(ap, void (*)(void)));
	else
		r = fn.share_setopt(sh, opt, va_arg(ap, void *));
	va_end(ap);
	return r;
}

CURLSHcode curl_share_cleanup(CURLSH *sh)
{
	return ready() ? fn.share_cleanup(sh) : CURLSHE_NOT_BUILT_IN;
}

time_t curl_getdate(const char *s, const time_t *unused)
{
	return ready() ? fn.getdate(s, unused) : -1;
}
