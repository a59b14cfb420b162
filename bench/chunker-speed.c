/* Time chunker_cut() over pseudo-random data and print the throughput.
 *
 * usage: chunker-speed [MiB]   (default 512)
 */
#include <stdio.h>
#include <stdlib.h>

#include "snapshot/chunker.h"
#include "util/fileio.h"

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
	size_t len = mib << 20, pos = 0, chunks = 0;
	struct chunker_params p;
	uint64_t seed = 0x1234567, t0, t1;
	uint8_t *data = malloc(len);

	if (!data || len == 0) {
		fprintf(stderr, "chunker-speed: cannot allocate %zu MiB\n", mib);
		return 1;
	}
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = xorshift64(&seed);

		for (int k = 0; k < 8; k++)
			data[i + k] = (uint8_t)(v >> (8 * k));
	}
	chunker_params_init(&p, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES);
	t0 = now_ns();
	while (pos < len) {
		pos += chunker_cut(&p, data + pos, len - pos);
		chunks++;
	}
	t1 = now_ns();
	printf("chunker: %zu MiB in %.3f s = %.2f GB/s, %zu chunks, mean %zu bytes\n", mib,
	       (t1 - t0) / 1e9, (double)len / (t1 - t0), chunks, len / chunks);
	free(data);
	return 0;
}
