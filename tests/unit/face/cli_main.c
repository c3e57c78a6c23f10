/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-alone `face` program around dems_cli_face (server/cli/face.c), so
 * the command line can be tested before and apart from demsd:
 * `face_cli detect IMAGE...` behaves as `demsd face detect IMAGE...`.
 */
#include "demsd/cli.h"

int main(int argc, char **argv)
{
    static char name[] = "face";
    argv[0] = name;
    return dems_cli_face(argc, argv);
}
