import { LadingError } from '../errors';

export const completionHelp = `Usage: lading completion bash|zsh

Print a shell completion script. Load it with:
  bash:  source <(lading completion bash)      (or save it in ~/.local/share/bash-completion/completions/lading)
  zsh:   source <(lading completion zsh)       (in ~/.zshrc, after compinit)
`;

/** The long options a command's --help lists (the help text is the one source of truth). */
export function optionsOf(help: string): string[] {
  return [...new Set([...help.matchAll(/^ {2,}(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]!))].sort();
}

/**
 * A completion script built from the commands' help texts, so it never disagrees with them.
 * zsh gets the same function through bashcompinit (as many CLIs ship it): one script to keep right.
 */
export function completionScript(shell: string, helps: Record<string, string>): string {
  if (shell !== 'bash' && shell !== 'zsh')
    throw new LadingError('USAGE', `completion: bash or zsh, not ${JSON.stringify(shell.slice(0, 40))}`);
  const cases = Object.entries(helps)
    .map(([name, help]) => `    ${name}) opts="${[...optionsOf(help), '--help'].join(' ')}" ;;`)
    .join('\n');
  const body = `_lading() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${[...Object.keys(helps), 'version', 'help'].join(' ')}" -- "$cur") )
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
}
complete -o default -F _lading lading
`;
  return shell === 'bash' ? body : `autoload -U +X bashcompinit && bashcompinit\n${body}`;
}
