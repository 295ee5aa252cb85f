/**
 * `teiplex ctl completion bash`: a bash completion script written from the verb table. It
 * completes verbs, flags (the verb's and the global ones), fixed flag values (`-o json`,
 * `--runtime tei`), file names for the certificate flags, and instance and model names from the
 * live manager: it runs `teiplex ctl ls -o name` / `models -o name` with the --url, --api-key and
 * certificate flags already on the line (or the environment's), and completes nothing when the
 * manager does not answer within 2 seconds. Only `teiplex ctl ...` is completed; the other
 * subcommands get bash's default (file names).
 */
import { GLOBAL_FLAGS, SHELLS, VERBS, type FlagDef } from './verbs.js';

const words = (xs: readonly string[]): string => xs.join(' ');
const flagWords = (flags: readonly FlagDef[]): string[] => flags.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])]);

export function bashCompletion(): string {
  const valued = [...GLOBAL_FLAGS, ...VERBS.flatMap((v) => v.flags)].filter((f) => f.type === 'string');
  const valueCases = valued
    .filter((f) => f.completeValues !== undefined)
    .map((f) => {
      const pat = [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])].join('|');
      const body =
        f.completeValues === 'files'
          ? 'COMPREPLY=($(compgen -f -- "$cur"))'
          : `COMPREPLY=($(compgen -W "${words(f.completeValues as readonly string[])}" -- "$cur"))`;
      return `      ${pat}) ${body}; return 0 ;;`;
    });
  const otherValued = valued.filter((f) => f.completeValues === undefined).map((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])].join('|'));
  const verbFlagCases = VERBS.map((v) => `      ${v.name}) vflags="${words(flagWords(v.flags))}" ;;`);
  const nameCases = VERBS.filter((v) => v.names !== undefined).map((v) =>
    v.names === 'shells'
      ? `      ${v.name}) COMPREPLY=($(compgen -W "${words(SHELLS)}" -- "$cur")) ;;`
      : `      ${v.name}) COMPREPLY=($(compgen -W "$(_teiplex_ctl_names ${v.names === 'instances' ? 'ls' : 'models'})" -- "$cur")) ;;`,
  );
  const connFlags = GLOBAL_FLAGS.filter((f) => ['url', 'api-key', 'cacert', 'cert', 'key'].includes(f.name)).map((f) => `--${f.name}`);
  return `# bash completion for \`teiplex ctl\`; load it with: source <(teiplex ctl completion bash)
_teiplex_ctl_names() {
  # instance or model names from the live manager, with the connection flags on the line
  local -a conn=()
  local i
  for ((i = 1; i < \${#COMP_WORDS[@]} - 1; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${connFlags.join('|')}) conn+=("\${COMP_WORDS[i]}" "\${COMP_WORDS[i+1]}") ;;
    esac
  done
  timeout 2 "\${COMP_WORDS[0]}" ctl "$1" -o name --timeout 2 "\${conn[@]}" 2>/dev/null
}

_teiplex() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  COMPREPLY=()
  if [[ \${COMP_CWORD} -eq 1 ]]; then
    COMPREPLY=($(compgen -W "serve router bench make-test-model ctl --help --version" -- "$cur"))
    return 0
  fi
  if [[ "\${COMP_WORDS[1]}" != ctl ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
  fi
  case "$prev" in
${valueCases.join('\n')}
      ${otherValued.join('|')}) return 0 ;;
  esac
  # the verb: the first word after ctl that is not a flag or a flag's value
  local verb="" i w
  for ((i = 2; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
      --) break ;;
      ${[...valued.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])])].join('|')}) ((i++)) ;;
      -*) ;;
      *) verb="$w"; break ;;
    esac
  done
  if [[ -z "$verb" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "${words(flagWords(GLOBAL_FLAGS))}" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "${words(VERBS.map((v) => v.name))}" -- "$cur"))
    fi
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    local vflags=""
    case "$verb" in
${verbFlagCases.join('\n')}
    esac
    COMPREPLY=($(compgen -W "$vflags ${words(flagWords(GLOBAL_FLAGS))}" -- "$cur"))
    return 0
  fi
  case "$verb" in
${nameCases.join('\n')}
  esac
  return 0
}
complete -F _teiplex teiplex
`;
}
