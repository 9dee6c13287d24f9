/* cors.h - Cross-Origin Resource Sharing for `spex serve --cors-origin ORIGIN`,
 * so a web page served from ORIGIN may call the API from a browser.
 *
 * With an origin configured every response carries
 *   Access-Control-Allow-Origin: ORIGIN   (and Vary: Origin unless ORIGIN is "*")
 *   Access-Control-Expose-Headers: Content-Type
 * and an OPTIONS preflight to a known endpoint is answered 204 with
 *   Access-Control-Allow-Methods: GET, POST, OPTIONS
 *   Access-Control-Allow-Headers: what the browser asked for
 *     (Access-Control-Request-Headers), else Authorization, Content-Type
 *   Access-Control-Max-Age: 86400
 * before any API key check (a browser never sends credentials in a
 * preflight). Without an origin nothing is added and OPTIONS gets 405 as
 * any other wrong method. */
#ifndef SPEX_CORS_H
#define SPEX_CORS_H

#include <microhttpd.h>

/* Add the response headers above (nothing when origin is NULL). */
void cors_headers(struct MHD_Response *r, const char *origin);

/* Queue the 204 preflight answer on c. */
enum MHD_Result cors_preflight(struct MHD_Connection *c, const char *origin);

#endif
