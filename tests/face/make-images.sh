#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the constructed test images in tests/face/images/ from face-api's
# demo photos (MIT) with ImageMagick 6 (Debian `imagemagick`). The outputs are
# committed; re-running may change JPEG bytes only if ImageMagick changes.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
D=${DEMS_MODELS:-$top/.models}/node_modules/@vladmandic/face-api/demo
O=$top/tests/face/images
C=/usr/bin/convert
mkdir -p "$O"
$C "$D/sample1.jpg" -resize 40% -quality 90 "$O/scaled.jpg"          # 768x512
$C "$D/sample5.jpg" -resize 20% -quality 92 "$O/tiny.jpg"            # faces ~30 px
$C "$D/sample1.jpg" -crop 420x460+300+240 +repage -background black -rotate 20 -quality 90 "$O/rotated.jpg"
$C "$D/sample3.jpg" -crop 350x450+500+250 +repage -quality 90 "$O/portrait.jpg"
$C "$D/sample1.jpg" -crop 600x500+480+400 +repage -quality 90 "$O/border.jpg"   # face cut at left/top
$C "$D/sample2.jpg" -crop 500x300+0+1000 +repage -quality 90 "$O/noface.jpg"
$C "$D/sample4.jpg" -crop 900x500+200+0 +repage -flop -quality 90 "$O/flipped.jpg"
# A 120x150 region of the decoded portrait as PNG: the PNG and JPEG decoders
# must agree on it pixel for pixel (the PPM reader is tested from a file the
# unit test writes).
djpeg -pnm "$O/portrait.jpg" | $C ppm:- -crop 120x150+100+100 +repage "$O/portrait-crop.png"
# The same region as a CMYK JPEG (Adobe marker, inverted inks).
djpeg -pnm "$O/portrait.jpg" | $C ppm:- -crop 120x150+100+100 +repage -colorspace CMYK \
    -quality 95 "$O/portrait-crop-cmyk.jpg"
