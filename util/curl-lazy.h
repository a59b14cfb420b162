/* libcurl loaded on first use (curl-lazy.c): the ordinary curl API, plus why
 * the library could not be loaded. */
#pragma once

/* NULL once libcurl is loaded (loading it now if needed), else why not. */
const char *curl_lazy_error(void);
