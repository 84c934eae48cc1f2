# bash completion for roam. The commands and options come from roam's own
# --help at completion time, so they are never out of date.
_roam_commands() { # roam [GROUP] --help -> the commands it lists
        "${COMP_WORDS[0]}" "$@" --help 2>/dev/null | awk '/^Commands:/ { c = 1; next } c && /^  [a-z]/ { print $1 }'
}
_roam_options() { # roam CMD... --help -> its long options
        "${COMP_WORDS[0]}" "$@" --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u
}
_roam() {
        local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        local i=1 args=()
        # skip the global options
        while [ $i -lt $COMP_CWORD ]; do
                case ${COMP_WORDS[i]} in
                --home | --log-level) i=$((i + 2)) ;;
                -*) i=$((i + 1)) ;;
                *) break ;;
                esac
        done
        args=("${COMP_WORDS[@]:i:COMP_CWORD-i}")
        case $prev in
        --home) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --log-level) COMPREPLY=($(compgen -W "debug info warning error" -- "$cur")); return ;;
        --role) COMPREPLY=($(compgen -W "server laptop admin user host" -- "$cur")); return ;;
        --config | --log | --tls-cert | --tls-key | --cacert | -o | --output) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac
        if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$(_roam_options "${args[@]:0:2}")" -- "$cur"))
                return
        fi
        if [ ${#args[@]} -eq 0 ]; then
                COMPREPLY=($(compgen -W "$(_roam_commands)" -- "$cur"))
                return
        fi
        if [ ${#args[@]} -eq 1 ]; then
                local sub
                sub=$(_roam_commands "${args[0]}")
                if [ -n "$sub" ]; then
                        COMPREPLY=($(compgen -W "$sub" -- "$cur"))
                        return
                fi
        fi
        COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _roam roam
