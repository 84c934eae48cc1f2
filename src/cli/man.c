/* SPDX-License-Identifier: MIT */
/* Man pages from the verb tables: each verb's own --help text, captured and
 * set in roff, so the help text stays the only source. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#include "../basic/macro.h"

#define HELP_MAX (64 * 1024)

/* Runs v with --help and returns what it printed on stdout (caller frees),
 * or NULL. */
static char *capture_help(const Verb *v) {
        fflush(stdout);
        FILE *tmp = tmpfile();
        int saved = dup(STDOUT_FILENO);
        if (!tmp || saved < 0 || dup2(fileno(tmp), STDOUT_FILENO) < 0) {
                if (tmp)
                        fclose(tmp);
                if (saved >= 0)
                        close(saved);
                return NULL;
        }
        char *argv[] = { (char *) v->name, "--help", NULL };
        optind = 0;
        int rc = v->run(2, argv);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
        char *text = calloc(1, HELP_MAX + 1);
        size_t n = 0;
        if (text && rc == 0) {
                rewind(tmp);
                n = fread(text, 1, HELP_MAX, tmp);
        }
        fclose(tmp);
        if (!text || rc != 0 || n == 0) {
                free(text);
                return NULL;
        }
        return text;
}

static void man_text(const char *s, size_t n) {
        bool bol = true;
        for (size_t i = 0; i < n && s[i]; i++) {
                char c = s[i];
                if (bol && (c == '.' || c == '\''))
                        fputs("\\&", stdout);
                bol = c == '\n';
                if (c == '\\')
                        fputs("\\e", stdout);
                else if (c == '-')
                        fputs("\\-", stdout);
                else
                        putchar(c);
        }
}

static void man_line(const char *s) {
        man_text(s, strlen(s));
        putchar('\n');
}

int cli_man_verb(const char *prefix, const Verb *v) {
        _cleanup_free_ char *help = capture_help(v);
        if (!help) {
                fprintf(stderr, "roam: 'roam %s%s --help' printed no help\n", prefix, v->name);
                return 1;
        }
        /* "usage: roam X ARGS\n\nbody" */
        char *usage = help, *body = strstr(help, "\n\n");
        if (!strncmp(usage, "usage: ", 7))
                usage += 7;
        if (body) {
                *body = 0;
                body += 2;
        } else
                usage[strcspn(usage, "\n")] = 0;
        fputs(".SS \"", stdout);
        man_text(usage, strlen(usage));
        puts("\"");
        if (v->summary) {
                man_line(v->summary);
                puts(".PP");
        }
        if (body && *body) {
                puts(".nf");
                man_text(body, strlen(body));
                if (body[strlen(body) - 1] != '\n')
                        putchar('\n');
                puts(".fi");
        }
        return 0;
}

void cli_man_header(const char *page, const char *name, const char *summary) {
        char upper[64];
        size_t i = 0;
        for (; page[i] && i < sizeof upper - 1; i++)
                upper[i] = (char) (page[i] >= 'a' && page[i] <= 'z' ? page[i] - 'a' + 'A' : page[i]);
        upper[i] = 0;
        printf(".TH \"%s\" 1 \"\" \"roam %s\" \"roam manual\"\n.SH NAME\n", upper, ROAM_VERSION);
        man_text(name, strlen(name));
        fputs(" \\- ", stdout);
        man_line(summary);
}

int cli_man_commands(const char *group, const Verb *table, size_t n) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s ", group);
        puts(".SH COMMANDS");
        for (size_t i = 0; i < n; i++)
                if (cli_man_verb(prefix, &table[i]))
                        return 1;
        return 0;
}
