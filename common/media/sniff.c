/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Magic numbers (include/dems/sniff.h). The table covers the containers
 * phones and CCTV systems export (MP4/QuickTime, Matroska, AVI, ASF, MPEG
 * program and transport streams, raw H.264/H.265, Dahua DAV, Hikvision),
 * still images, common audio, the archives exports come in, and a few
 * recognisable non-media files (programs, PDF) so a refusal can say what
 * the file appears to be.
 */
#include "dems/sniff.h"

#include <stdbool.h>
#include <string.h>

static int at(const uint8_t *p, size_t n, size_t off, const char *magic, size_t len)
{
    return n >= off + len && memcmp(p + off, magic, len) == 0;
}

#define AT(off, lit) at(head, n, (off), (lit), sizeof(lit) - 1)

static struct dems_sniffed is(enum dems_sniff_kind kind, const char *format, const char *label,
                              const char *mime)
{
    return (struct dems_sniffed){.kind = kind, .format = format, .label = label, .mime_type = mime};
}

/* ISO base media (ftyp box at 4): the major brand tells video, still or audio. */
static struct dems_sniffed iso_bmff(const uint8_t *head, size_t n)
{
    if (AT(8, "qt  "))
        return is(DEMS_SNIFF_VIDEO, "quicktime", "QuickTime video", "video/quicktime");
    if (AT(8, "heic") || AT(8, "heix") || AT(8, "mif1") || AT(8, "msf1"))
        return is(DEMS_SNIFF_IMAGE, "heic", "HEIF/HEIC image", "image/heic");
    if (AT(8, "avif"))
        return is(DEMS_SNIFF_IMAGE, "avif", "AVIF image", "image/avif");
    if (AT(8, "M4A ") || AT(8, "M4B "))
        return is(DEMS_SNIFF_AUDIO, "m4a", "MPEG-4 audio", "audio/mp4");
    if (AT(8, "3gp") || AT(8, "3g2"))
        return is(DEMS_SNIFF_VIDEO, "3gp", "3GPP video", "video/3gpp");
    return is(DEMS_SNIFF_VIDEO, "mp4", "MPEG-4 video", "video/mp4");
}

/* A raw Annex B stream: a start code, then an H.264 or H.265 parameter set,
 * delimiter or slice. CCTV exports (.264, .h264, .265) are often just this. */
static int annex_b(const uint8_t *head, size_t n)
{
    size_t i;
    if (AT(0, "\x00\x00\x00\x01"))
        i = 4;
    else if (AT(0, "\x00\x00\x01"))
        i = 3;
    else
        return 0;
    if (n <= i + 1)
        return 0;
    unsigned avc = head[i] & 0x1f, hevc = (head[i] >> 1) & 0x3f;
    bool forbidden = (head[i] & 0x80) != 0;
    if (forbidden)
        return 0;
    return avc == 7 || avc == 9 || avc == 6 || avc == 5 || hevc == 32 || hevc == 35 || hevc == 39;
}

/* An MPEG transport stream: sync bytes one packet apart (188, or 192 for M2TS). */
static int transport_stream(const uint8_t *head, size_t n)
{
    if (n > 188 && head[0] == 0x47 && head[188] == 0x47)
        return 1;
    return n > 196 && head[4] == 0x47 && head[196] == 0x47;
}

struct dems_sniffed dems_sniff(const uint8_t *head, size_t n)
{
    if (n > DEMS_SNIFF_HEAD)
        n = DEMS_SNIFF_HEAD;
    /* video */
    if (AT(4, "ftyp"))
        return iso_bmff(head, n);
    if (AT(0, "\x1a\x45\xdf\xa3")) {
        for (size_t i = 4; i + 4 <= n; i++) {
            if (memcmp(head + i, "webm", 4) == 0)
                return is(DEMS_SNIFF_VIDEO, "webm", "WebM video", "video/webm");
        }
        return is(DEMS_SNIFF_VIDEO, "matroska", "Matroska video", "video/x-matroska");
    }
    if (AT(0, "RIFF") && AT(8, "AVI "))
        return is(DEMS_SNIFF_VIDEO, "avi", "AVI video", "video/x-msvideo");
    if (AT(0, "\x30\x26\xb2\x75\x8e\x66\xcf\x11"))
        return is(DEMS_SNIFF_VIDEO, "asf", "Windows Media (ASF) video", "video/x-ms-asf");
    if (AT(0, "FLV\x01"))
        return is(DEMS_SNIFF_VIDEO, "flv", "Flash video", "video/x-flv");
    if (AT(0, "\x00\x00\x01\xba"))
        return is(DEMS_SNIFF_VIDEO, "mpeg-ps", "MPEG program stream video", "video/mpeg");
    if (AT(0, "\x00\x00\x01\xb3"))
        return is(DEMS_SNIFF_VIDEO, "mpeg-video", "MPEG-1/2 video stream", "video/mpeg");
    if (transport_stream(head, n))
        return is(DEMS_SNIFF_VIDEO, "mpeg-ts", "MPEG transport stream video", "video/mp2t");
    if (AT(0, "DHAV"))
        return is(DEMS_SNIFF_VIDEO, "dahua-dav", "Dahua DAV (CCTV) video",
                  "application/octet-stream");
    if (AT(0, "IMKH"))
        return is(DEMS_SNIFF_VIDEO, "hikvision", "Hikvision (CCTV) video",
                  "application/octet-stream");
    if (annex_b(head, n))
        return is(DEMS_SNIFF_VIDEO, "h26x-annexb", "raw H.264/H.265 video stream", "video/h264");
    if (AT(0, "OggS"))
        return is(DEMS_SNIFF_VIDEO, "ogg", "Ogg media", "application/ogg");
    /* images */
    if (AT(0, "\xff\xd8\xff"))
        return is(DEMS_SNIFF_IMAGE, "jpeg", "JPEG image", "image/jpeg");
    if (AT(0, "\x89PNG\r\n\x1a\n"))
        return is(DEMS_SNIFF_IMAGE, "png", "PNG image", "image/png");
    if (AT(0, "GIF87a") || AT(0, "GIF89a"))
        return is(DEMS_SNIFF_IMAGE, "gif", "GIF image", "image/gif");
    if (AT(0, "RIFF") && AT(8, "WEBP"))
        return is(DEMS_SNIFF_IMAGE, "webp", "WebP image", "image/webp");
    if (AT(0, "II*\x00") || AT(0, "MM\x00*"))
        return is(DEMS_SNIFF_IMAGE, "tiff", "TIFF image", "image/tiff");
    if (AT(0, "BM") && n >= 14 && head[6] == 0 && head[7] == 0 && head[8] == 0 && head[9] == 0)
        return is(DEMS_SNIFF_IMAGE, "bmp", "BMP image", "image/bmp");
    /* audio */
    if (AT(0, "RIFF") && AT(8, "WAVE"))
        return is(DEMS_SNIFF_AUDIO, "wav", "WAV audio", "audio/wav");
    if (AT(0, "ID3"))
        return is(DEMS_SNIFF_AUDIO, "mp3", "MP3 audio", "audio/mpeg");
    if (AT(0, "fLaC"))
        return is(DEMS_SNIFF_AUDIO, "flac", "FLAC audio", "audio/flac");
    if (AT(0, "#!AMR"))
        return is(DEMS_SNIFF_AUDIO, "amr", "AMR audio", "audio/amr");
    if (n >= 2 && head[0] == 0xff && (head[1] & 0xe0) == 0xe0)
        return is(DEMS_SNIFF_AUDIO, "mpeg-audio", "MPEG audio (MP3/AAC)", "audio/mpeg");
    /* archives */
    if (AT(0, "PK\x03\x04") || AT(0, "PK\x05\x06") || AT(0, "PK\x07\x08"))
        return is(DEMS_SNIFF_ARCHIVE, "zip", "ZIP archive", "application/zip");
    if (AT(0, "7z\xbc\xaf\x27\x1c"))
        return is(DEMS_SNIFF_ARCHIVE, "7z", "7-Zip archive", "application/x-7z-compressed");
    if (AT(0, "Rar!\x1a\x07"))
        return is(DEMS_SNIFF_ARCHIVE, "rar", "RAR archive", "application/vnd.rar");
    if (AT(0, "\x1f\x8b"))
        return is(DEMS_SNIFF_ARCHIVE, "gzip", "gzip archive", "application/gzip");
    if (AT(0, "\xfd"
              "7zXZ\x00"))
        return is(DEMS_SNIFF_ARCHIVE, "xz", "xz archive", "application/x-xz");
    if (AT(257, "ustar"))
        return is(DEMS_SNIFF_ARCHIVE, "tar", "tar archive", "application/x-tar");
    /* recognised, not media */
    if (AT(0, "MZ"))
        return is(DEMS_SNIFF_OTHER, "windows-program", "a Windows program",
                  "application/vnd.microsoft.portable-executable");
    if (AT(0, "\x7f"
              "ELF"))
        return is(DEMS_SNIFF_OTHER, "elf-program", "a Linux program", "application/x-executable");
    if (AT(0, "%PDF-"))
        return is(DEMS_SNIFF_OTHER, "pdf", "a PDF document", "application/pdf");
    return is(DEMS_SNIFF_UNKNOWN, "unknown", "an unrecognised file", "application/octet-stream");
}

const char *dems_sniff_kind_name(enum dems_sniff_kind kind)
{
    switch (kind) {
    case DEMS_SNIFF_VIDEO:
        return "video";
    case DEMS_SNIFF_IMAGE:
        return "image";
    case DEMS_SNIFF_AUDIO:
        return "audio";
    case DEMS_SNIFF_ARCHIVE:
        return "archive";
    case DEMS_SNIFF_OTHER:
        return "other";
    case DEMS_SNIFF_UNKNOWN:
        break;
    }
    return "unknown";
}

int dems_sniff_portal_allowed(enum dems_sniff_kind kind)
{
    return kind == DEMS_SNIFF_VIDEO || kind == DEMS_SNIFF_IMAGE || kind == DEMS_SNIFF_AUDIO ||
           kind == DEMS_SNIFF_ARCHIVE;
}
