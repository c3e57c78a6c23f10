/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for what an object store answers (server/store): the
 * listing pages of both backends (Azure's List Blobs, S3's ListObjectsV2),
 * the XML scanner and text decoder under them, and the time parser. A store
 * is outside dems's trust boundary (a compromised or misbehaving endpoint,
 * or an emulator), so its bytes are hostile input: nothing may read or write
 * outside them, whatever they hold. The first byte picks the parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/store/obj_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct obj_entries l = {0};
    char next[1024];
    size_t touched = 0;
    switch (data[0] % 4) {
    case 0:
        (void)obj_azure_list_page(p, n, &l, next, sizeof(next));
        break;
    case 1:
        (void)obj_s3_list_page(p, n, &l, next, sizeof(next));
        break;
    case 2: {
        const char *v;
        size_t vl;
        char text[256];
        for (const char *q = p; (q = obj_xml_find(q, p + n, "Code", &v, &vl)) != NULL;)
            if (obj_xml_text(v, vl, text, sizeof(text)) >= 0)
                touched += strlen(text);
        break;
    }
    default:
        touched += (size_t)(obj_parse_time(p, n) & 1);
        break;
    }
    for (size_t i = 0; i < l.n; i++)
        touched += strlen(l.e[i].key) + (size_t)(l.e[i].size & 1);
    obj_entries_free(&l);
    return touched == (size_t)-1; /* keeps the reads from being optimised away */
}
