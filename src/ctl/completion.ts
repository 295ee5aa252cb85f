/**
 * `teiplex ctl completion bash`: a bash completion script written from the verb table. It
 * completes verbs, flags (the verb's and the global ones), fixed flag values (`-o json`,
 * `--runtime tei`), file names for the certificate flags, and instance and model names from the
 * live manager: it runs `teiplex ctl ls -o name` / `models -o name` with the --url, --api-key and
 * certificate flags already on the line (or the environment's), and completes nothing when the
 * manager does not answer within 2 seconds. Only `teiplex ctl ...` is completed; the other
 * subcommands get bash's default (file names). A group's verbs (`batch submit`) complete after the
 * group's word, batch ids from `teiplex ctl batch status -o name`, and a flag whose values differ
 * by verb (`--output`: a format, a kind of embedding, a path) by the verb on the line.
 */
import { GLOBAL_FLAGS, groupVerbs, SHELLS, VERB_GROUPS, VERBS, type FlagDef, type VerbDef } from './verbs.js';

const words = (xs: readonly string[]): string => xs.join(' ');
const flagWords = (flags: readonly FlagDef[]): string[] => flags.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])]);
const valueCompletion = (f: FlagDef): string =>
  f.completeValues === 'files' ? 'COMPREPLY=($(compgen -f -- "$cur"))' : `COMPREPLY=($(compgen -W "${words(f.completeValues as readonly string[])}" -- "$cur"))`;

/** What completes a verb's NAME arguments. */
function nameCompletion(v: VerbDef): string | undefined {
  switch (v.names) {
    case 'shells':
      return `COMPREPLY=($(compgen -W "${words(SHELLS)}" -- "$cur"))`;
    case 'files':
      return 'COMPREPLY=($(compgen -f -- "$cur"))';
    case 'instances':
      return 'COMPREPLY=($(compgen -W "$(_teiplex_ctl_names ls)" -- "$cur"))';
    case 'models':
      return 'COMPREPLY=($(compgen -W "$(_teiplex_ctl_names models)" -- "$cur"))';
    case 'batches':
      return 'COMPREPLY=($(compgen -W "$(_teiplex_ctl_names batch status)" -- "$cur"))';
    default:
      return undefined;
  }
}

export function bashCompletion(): string {
  const valued = [...GLOBAL_FLAGS, ...VERBS.flatMap((v) => v.flags)].filter((f) => f.type === 'string');
  // A verb's own values for a flag (`batch download --output PATH`), before the global ones.
  const verbValueCases = VERBS.filter((v) => v.flags.some((f) => f.type === 'string' && f.completeValues !== undefined)).map((v) => {
    const cases = v.flags
      .filter((f) => f.type === 'string' && f.completeValues !== undefined)
      .map((f) => `        --${f.name}) ${valueCompletion(f)}; return 0 ;;`);
    return `    "${v.name}")\n      case "$prev" in\n${cases.join('\n')}\n      esac ;;`;
  });
  const globalValueCases = GLOBAL_FLAGS.filter((f) => f.type === 'string' && f.completeValues !== undefined).map((f) => {
    const pat = [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])].join('|');
    return `      ${pat}) ${valueCompletion(f)}; return 0 ;;`;
  });
  const otherValued = [...new Set(valued.filter((f) => f.completeValues === undefined).map((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])].join('|')))];
  const valuedWords = [...new Set(valued.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])]))];
  const verbFlagCases = VERBS.map((v) => `      "${v.name}") vflags="${words(flagWords(v.flags))}" ;;`);
  const nameCases = VERBS.flatMap((v) => {
    const c = nameCompletion(v);
    return c === undefined ? [] : [`      "${v.name}") ${c} ;;`];
  });
  const groupCases = Object.keys(VERB_GROUPS).map((g) => `      ${g}) COMPREPLY=($(compgen -W "${words(groupVerbs(g).map((v) => v.name.slice(g.length + 1)))}" -- "$cur")) ;;`);
  const topWords = [...new Set(VERBS.map((v) => v.name.split(' ')[0]))];
  const connFlags = GLOBAL_FLAGS.filter((f) => ['url', 'api-key', 'cacert', 'cert', 'key'].includes(f.name)).map((f) => `--${f.name}`);
  return `# bash completion for \`teiplex ctl\`; load it with: source <(teiplex ctl completion bash)
_teiplex_ctl_names() {
  # instance, model or batch names from the live manager, with the connection flags on the line
  local -a conn=()
  local i
  for ((i = 1; i < \${#COMP_WORDS[@]} - 1; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${connFlags.join('|')}) conn+=("\${COMP_WORDS[i]}" "\${COMP_WORDS[i+1]}") ;;
    esac
  done
  timeout 2 "\${COMP_WORDS[0]}" ctl "$@" -o name --timeout 2 "\${conn[@]}" 2>/dev/null
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
  # the verb: the first word after ctl that is not a flag or a flag's value (a group's word and the next such word)
  local verb="" group="" i w
  for ((i = 2; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in
      --) break ;;
      ${valuedWords.join('|')}) ((i++)) ;;
      -*) ;;
      *)
        if [[ -n "$group" ]]; then verb="$group $w"; break; fi
        case "$w" in
          ${Object.keys(VERB_GROUPS).join('|')}) group="$w" ;;
          *) verb="$w"; break ;;
        esac ;;
    esac
  done
  case "$verb" in
${verbValueCases.join('\n')}
  esac
  case "$prev" in
${globalValueCases.join('\n')}
      ${otherValued.join('|')}) return 0 ;;
  esac
  if [[ -z "$verb" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "${words(flagWords(GLOBAL_FLAGS))}" -- "$cur"))
    elif [[ -n "$group" ]]; then
      case "$group" in
${groupCases.join('\n')}
      esac
    else
      COMPREPLY=($(compgen -W "${words(topWords)}" -- "$cur"))
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
