"""Official chat templates of the families the harvester has presets for, verbatim, with their special tokens.

Each ``*_CHAT_TEMPLATE`` constant is the Jinja text a model publishes (the ``chat_template`` of its
``tokenizer_config.json`` or its ``chat_template.jinja``), copied byte for byte from the public copy its comment
cites (no model hub is reachable where longmagpie is built and tested). :data:`FAMILY_TEMPLATES` pairs each template
with the special tokens it needs, the token that closes an assistant turn and the harvest preset that must render
exactly as it does; ``tests/harvest/test_family_templates.py`` checks that preset and template agree.

Most copies come from TRL's ``trl/chat_templates/`` (huggingface/trl; TRL recognizes models by exact match
against these copies and a weekly CI job, ``scripts/check_chat_templates.py``, compares them with the chat
template each reference hub repo ships), as released in trl 1.16.0; the others from llama.cpp, whose
``models/templates/*.jinja`` and ``tests/test-chat-template.cpp`` hold the hub templates verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Gemma 1 and Gemma 2 (google/gemma-7b-it, google/gemma-2-2b-it ship it byte-identical): no system role.
# Source: huggingface/trl trl/chat_templates/gemma.jinja, release 1.16.0.
# Its sha256 (ecd6ae51...) and size (591) equal the Git LFS pointer of llama.cpp's
# models/templates/google-gemma-2-2b-it.jinja (Raudbjorn/ggml-llama.cpp @ 2b949f3de915a6434404caada3b6ff39c3890115).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not"
    " supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') !"
    "= (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assi"
    "stant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set ro"
    "le = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' +"
    " role + '\n"
    "' + message['content'] | trim + '<end_of_turn>\n"
    "' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n"
    "'}}{% endif %}"
)

# Gemma 3 (google/gemma-3-*-it): a system message is folded into the first user turn (text + blank line).
# Source: huggingface/trl trl/chat_templates/gemma3.jinja, release 1.16.0.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistan'
    't/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n"
    '\' + (first_user_prefix if loop.first else "") }}\n'
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n"
    "' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n"
    "'}}\n"
    "{%- endif -%}\n"
)

# Mistral-7B-Instruct-v0.3: ``[INST] `` (with a space); the system message is merged into the last user turn.
# Source: huggingface/trl trl/chat_templates/mistral.jinja @ 4a56de4bd88d182856b8a92798cc285bd50d35f0.
MISTRAL_V03_CHAT_TEMPLATE = (
    '{%- if messages[0]["role"] == "system" %}\n'
    '    {%- set system_message = messages[0]["content"] %}\n'
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    '{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n'
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messa"
    "ges #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    '    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_'
    "calls is defined and message.tool_calls is not none)) %}\n"
    '        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}\n'
    '            {{- raise_exception("After the optional system message, conversation roles mus'
    't alternate user/assistant/user/assistant/...") }}\n'
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    '    {%- if message["role"] == "user" %}\n'
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    '            {{- "[AVAILABLE_TOOLS] [" }}\n'
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    '                {{- \'{"type": "function", "function": {\' }}\n'
    '                {%- for key, val in tool.items() if key != "return" %}\n'
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    '                        {{- ", " }}\n'
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    '                {{- "}}" }}\n'
    "                {%- if not loop.last %}\n"
    '                    {{- ", " }}\n'
    "                {%- else %}\n"
    '                    {{- "]" }}\n'
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    '            {{- "[/AVAILABLE_TOOLS]" }}\n'
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    '            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n'
    "        {%- else %}\n"
    '            {{- "[INST] " + message["content"] + "[/INST]" }}\n'
    "        {%- endif %}\n"
    "    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n"
    '        {{- "[TOOL_CALLS] [" }}\n'
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    '                {{- raise_exception("Tool call IDs should be alphanumeric strings with len'
    'gth 9!") }}\n'
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    '                {{- ", " }}\n'
    "            {%- else %}\n"
    '                {{- "]" + eos_token }}\n'
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    '    {%- elif message["role"] == "assistant" %}\n'
    '        {{- " " + message["content"]|trim + eos_token}}\n'
    '    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}\n'
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    '        {{- \'[TOOL_RESULTS] {"content": \' + content|string + ", " }}\n'
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    '            {{- raise_exception("Tool call IDs should be alphanumeric strings with length '
    '9!") }}\n'
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    '        {{- raise_exception("Only user and assistant roles are supported, with the excepti'
    'on of an initial optional system message!") }}\n'
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)

# Mistral-Nemo-Instruct-2407: as v0.3 but ``[INST]`` without a space (Tekken tokenizer).
# Source: ggerganov/llama.cpp models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja
# @ 7b5e0803c84435e8005725d8f9ddceb5d1820443.
MISTRAL_NEMO_CHAT_TEMPLATE = (
    '{%- if messages[0]["role"] == "system" %}\n'
    '    {%- set system_message = messages[0]["content"] %}\n'
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    '{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}\n'
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messa"
    "ges #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    '    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_'
    "calls is defined and message.tool_calls is not none)) %}\n"
    '        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}\n'
    '            {{- raise_exception("After the optional system message, conversation roles mus'
    't alternate user/assistant/user/assistant/...") }}\n'
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    '    {%- if message["role"] == "user" %}\n'
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    '            {{- "[AVAILABLE_TOOLS][" }}\n'
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    '                {{- \'{"type": "function", "function": {\' }}\n'
    '                {%- for key, val in tool.items() if key != "return" %}\n'
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    '                        {{- ", " }}\n'
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    '                {{- "}}" }}\n'
    "                {%- if not loop.last %}\n"
    '                    {{- ", " }}\n'
    "                {%- else %}\n"
    '                    {{- "]" }}\n'
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    '            {{- "[/AVAILABLE_TOOLS]" }}\n'
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    '            {{- "[INST]" + system_message + "\\n\\n" + message["content"] + "[/INST]" }}\n'
    "        {%- else %}\n"
    '            {{- "[INST]" + message["content"] + "[/INST]" }}\n'
    "        {%- endif %}\n"
    "    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}\n"
    '        {{- "[TOOL_CALLS][" }}\n'
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    '                {{- raise_exception("Tool call IDs should be alphanumeric strings with len'
    'gth 9!") }}\n'
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    '                {{- ", " }}\n'
    "            {%- else %}\n"
    '                {{- "]" + eos_token }}\n'
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    '    {%- elif message["role"] == "assistant" %}\n'
    '        {{- message["content"] + eos_token}}\n'
    '    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}\n'
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    '        {{- \'[TOOL_RESULTS]{"content": \' + content|string + ", " }}\n'
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    '            {{- raise_exception("Tool call IDs should be alphanumeric strings with length '
    '9!") }}\n'
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    '        {{- raise_exception("Only user and assistant roles are supported, with the excepti'
    'on of an initial optional system message!") }}\n'
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)

# Phi-3-mini-4k-instruct (current revision: no BOS written by the template).
# Source: huggingface/trl trl/chat_templates/phi3.jinja, release 1.16.0.
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'user' %}{{'<|user|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n"
    "' }}{% else %}{{ eos_token }}{% endif %}"
)

# Phi-3.5-mini-instruct (as Phi-3, an empty system message is dropped).
# Source: huggingface/trl trl/chat_templates/phi3_5.jinja, release 1.16.0; byte-identical to ggerganov/llama.cpp
# models/templates/microsoft-Phi-3.5-mini-instruct.jinja @ 7b5e0803c84435e8005725d8f9ddceb5d1820443.
PHI35_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{"
    "'<|system|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'user' %}{{'<|user|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n"
    "' + message['content'] + '<|end|>\n"
    "'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n"
    "' }}{% else %}{{ eos_token }}{% endif %}"
)

# microsoft/phi-4: the assistant opener follows every user message (no add_generation_prompt branch).
# Source: ggml-org/llama.cpp tests/test-chat-template.cpp, test case "phi-4"
# @ 03f94f19a2c4c9d039fa1a84838fe3e2110cc28d.
PHI4_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system<|"
    "im_sep|>' + message['content'] + '<|im_end|>'}}{% elif (message['role'] == 'user') %}{{'<|"
    "im_start|>user<|im_sep|>' + message['content'] + '<|im_end|><|im_start|>assistant<|im_sep|"
    ">'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|im_end|>'}}{% end"
    "if %}{% endfor %}"
)

# deepseek-ai/DeepSeek-R1 (model type deepseek_v3): the generation prompt opens a think block.
# Source: huggingface/trl trl/chat_templates/deepseekv3.jinja, release 1.16.0 (TRL checks it against
# deepseek-ai/DeepSeek-R1).
DEEPSEEK_R1_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% end"
    "if %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_pro"
    "mpt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'syste"
    "m' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content"
    "'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt"
    " + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns"
    ".system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set "
    "ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'"
    "] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}{%- for tool "
    "in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}{{"
    "'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + t"
    "ool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' +"
    " '```' + '<｜tool▁call▁end｜>'}}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁"
    "calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name"
    "'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call"
    "▁end｜>'}}{%- endif %}{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜"
    ">' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor"
    " %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- if message['role'] == 'assis"
    "tant' and 'tool_calls' not in message %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + mes"
    "sage['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{% set c"
    "ontent = message['content'] %}{% if '</think>' in content %}{% set content = content.split"
    "('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- end"
    "if %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns"
    ".is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + "
    "'<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'<｜tool▁output▁be"
    "gin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%"
    "}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and n"
    "ot ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)

# DeepSeek-V3.1: thinking off unless ``thinking``/``enable_thinking``; off, the generation prompt closes an empty
# think block. Source: ggml-org/llama.cpp models/templates/deepseek-ai-DeepSeek-V3.1.jinja
# @ 0374c5b6e4c19370262d93e2c3f2a98c9af9fe1f.
DEEPSEEK_V31_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined -%}\n"
    "  {%- set add_generation_prompt = false -%}\n"
    "{%- endif -%}\n"
    "{%- if not thinking is defined -%}\n"
    "  {%- if enable_thinking is defined -%}\n"
    "    {%- set thinking = enable_thinking -%}\n"
    "    {%- else -%}\n"
    "    {%- set thinking = false -%}\n"
    "  {%- endif -%}\n"
    "{%- endif -%}\n"
    "{%- set ns = namespace(is_first=false, is_tool=false, system_prompt='', is_first_sp=true, "
    "is_last_user=false) -%}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'system' -%}\n"
    "    {%- if ns.is_first_sp -%}\n"
    "      {%- set ns.system_prompt = ns.system_prompt + message['content'] -%}\n"
    "      {%- set ns.is_first_sp = false -%}\n"
    "      {%- else -%}\n"
    "      {%- set ns.system_prompt = ns.system_prompt + '\n"
    "\n"
    "' + message['content'] -%}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}{{ bos_token }}{{ ns.system_prompt }}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'user' -%}\n"
    "    {%- set ns.is_tool = false -%}\n"
    "    {%- set ns.is_first = false -%}\n"
    "    {%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content']}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['"
    "tool_calls'] is not none -%}\n"
    "    {%- if ns.is_last_user -%}{{'<｜Assistant｜></think>'}}\n"
    "    {%- endif -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- set ns.is_first = false -%}\n"
    "    {%- set ns.is_tool = false -%}\n"
    "    {%- for tool in message['tool_calls'] -%}\n"
    "      {%- if not ns.is_first -%}\n"
    "        {%- if message['content'] is none -%}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ "
    "tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁e"
    "nd｜>'}}\n"
    "          {%- else -%}{{message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + t"
    "ool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁en"
    "d｜>'}}\n"
    "        {%- endif -%}\n"
    "        {%- set ns.is_first = true -%}\n"
    "        {%- else -%}{{'<｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + t"
    "ool['function']['arguments'] + '<｜tool▁call▁end｜>'}}\n"
    "      {%- endif -%}\n"
    "    {%- endfor -%}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and (message['tool_calls'] is not defined or messa"
    "ge['tool_calls'] is none) -%}\n"
    "    {%- if ns.is_last_user -%}{{'<｜Assistant｜>'}}\n"
    "      {%- if message['prefix'] is defined and message['prefix'] and thinking -%}{{'<think>"
    "'}}\n"
    "        {%- else -%}{{'</think>'}}\n"
    "      {%- endif -%}\n"
    "    {%- endif -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- if ns.is_tool -%}{{message['content'] + '<｜end▁of▁sentence｜>'}}\n"
    "      {%- set ns.is_tool = false -%}\n"
    "      {%- else -%}\n"
    "      {%- set content = message['content'] -%}\n"
    "      {%- if '</think>' in content -%}\n"
    "        {%- set content = content.split('</think>', 1)[1] -%}\n"
    "      {%- endif -%}{{content + '<｜end▁of▁sentence｜>'}}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'tool' -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- set ns.is_tool = true -%}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁"
    "output▁end｜>'}}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt and ns.is_last_user and not ns.is_tool -%}{{'<｜Assistant｜>'}}"
    "\n"
    "  {%- if not thinking -%}{{'</think>'}}\n"
    "    {%- else -%}{{'<think>'}}\n"
    "  {%- endif -%}\n"
    "{%- endif %}"
)

# DeepSeek-R1-Distill-{Qwen,Llama}-*: as R1 (single system message).
# Source: huggingface/trl trl/chat_templates/deepseek_r1_distill.jinja, release 1.16.0.
DEEPSEEK_R1_DISTILL_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% end"
    "if %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_pro"
    "mpt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.sys"
    "tem_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt"
    "}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = fa"
    "lse -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant"
    "' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['"
    "tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁beg"
    "in｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n'"
    " + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first"
    " = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + too"
    "l['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '"
    "```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- end"
    "for %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none"
    " %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜"
    ">'}}{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}{% if '"
    "</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜As"
    "sistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role"
    "'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁"
    "begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_"
    "output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜to"
    "ol▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outpu"
    "ts▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><th"
    "ink>\\n'}}{% endif %}"
)

# Meta-Llama-3-8B-Instruct (no system preamble).
# Source: huggingface/trl trl/chat_templates/llama3.jinja, release 1.16.0.
LLAMA3_OFFICIAL_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|st"
    "art_header_id|>' + message['role'] + '<|end_header_id|>\n"
    "\n"
    "'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bo"
    "s_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '"
    "<|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "' }}{% endif %}"
)

# Llama-3.1-8B-Instruct: always a system turn with "Cutting Knowledge Date: December 2023" and
# "Today Date: {date_string}", date_string defaulting to "26 Jul 2024".
# Source: huggingface/trl trl/chat_templates/llama3_1.jinja, release 1.16.0.
LLAMA31_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    '    {%- set date_string = "26 Jul 2024" %}\n'
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    "\n"
    "{#- System message + builtin tools #}\n"
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    "{%- if builtin_tools is defined or tools is not none %}\n"
    '    {{- "Environment: ipython\\n" }}\n'
    "{%- endif %}\n"
    "{%- if builtin_tools is defined %}\n"
    '    {{- "Tools: " + builtin_tools | reject(\'equalto\', \'code_interpreter\') | join(", ") + "'
    '\\n\\n"}}\n'
    "{%- endif %}\n"
    '{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n'
    "{%- if tools is not none and not tools_in_user_message %}\n"
    '    {{- "You have access to the following functions. To call a function, please respond wi'
    'th JSON for a function call." }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argumen'
    "t name and its value}.' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n'
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    '        {{- "\\n\\n" }}\n'
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    '{{- "<|eot_id|>" }}\n'
    "\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n"
    "    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    "        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no fi"
    'rst user message!") }}\n'
    "{%- endif %}\n"
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    '    {{- "Given the following functions, please respond with a JSON for a function call " }'
    "}\n"
    '    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argumen'
    "t name and its value}.' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n'
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    '        {{- "\\n\\n" }}\n'
    "    {%- endfor %}\n"
    '    {{- first_user_message + "<|eot_id|>"}}\n'
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in mes"
    "sage) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['co"
    "ntent'] | trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    '            {{- raise_exception("This model only supports single tool-calls at once!") }}\n'
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    '            {{- "<|python_tag|>" + tool_call.name + ".call(" }}\n'
    "            {%- for arg_name, arg_val in tool_call.arguments | items %}\n"
    "                {{- arg_name + '=\"' + arg_val + '\"' }}\n"
    "                {%- if not loop.last %}\n"
    '                    {{- ", " }}\n'
    "                {%- endif %}\n"
    "                {%- endfor %}\n"
    '            {{- ")" }}\n'
    "        {%- else  %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "            {{- '\"parameters\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    '            {{- "}" }}\n'
    "        {%- endif %}\n"
    "        {%- if builtin_tools is defined %}\n"
    "            {#- This means we're in ipython mode #}\n"
    '            {{- "<|eom_id|>" }}\n'
    "        {%- else %}\n"
    '            {{- "<|eot_id|>" }}\n'
    "        {%- endif %}\n"
    '    {%- elif message.role == "tool" or message.role == "ipython" %}\n'
    '        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n'
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    '        {{- "<|eot_id|>" }}\n'
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)

# Llama-3.2-1B-Instruct: as 3.1, but date_string defaults to today's date (strftime_now) where the renderer has
# it (transformers does). Source: huggingface/trl trl/chat_templates/llama3_2.jinja, release 1.16.0.
# Byte-identical to ggerganov/llama.cpp models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja
# @ 7b5e0803c84435e8005725d8f9ddceb5d1820443.
LLAMA32_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- if strftime_now is defined %}\n"
    '        {%- set date_string = strftime_now("%d %b %Y") %}\n'
    "    {%- else %}\n"
    '        {%- set date_string = "26 Jul 2024" %}\n'
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    "\n"
    "{#- System message #}\n"
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    "{%- if tools is not none %}\n"
    '    {{- "Environment: ipython\\n" }}\n'
    "{%- endif %}\n"
    '{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n'
    "{%- if tools is not none and not tools_in_user_message %}\n"
    '    {{- "You have access to the following functions. To call a function, please respond wi'
    'th JSON for a function call." }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argumen'
    "t name and its value}.' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n'
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    '        {{- "\\n\\n" }}\n'
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    '{{- "<|eot_id|>" }}\n'
    "\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n"
    "    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    "        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no fi"
    'rst user message!") }}\n'
    "{%- endif %}\n"
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    '    {{- "Given the following functions, please respond with a JSON for a function call " }'
    "}\n"
    '    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n'
    '    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argumen'
    "t name and its value}.' }}\n"
    '    {{- "Do not use variables.\\n\\n" }}\n'
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    '        {{- "\\n\\n" }}\n'
    "    {%- endfor %}\n"
    '    {{- first_user_message + "<|eot_id|>"}}\n'
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in mes"
    "sage) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['co"
    "ntent'] | trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    '            {{- raise_exception("This model only supports single tool-calls at once!") }}\n'
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "        {{- '\"parameters\": ' }}\n"
    "        {{- tool_call.arguments | tojson }}\n"
    '        {{- "}" }}\n'
    '        {{- "<|eot_id|>" }}\n'
    '    {%- elif message.role == "tool" or message.role == "ipython" %}\n'
    '        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n'
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    '        {{- "<|eot_id|>" }}\n'
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)

# Qwen3-8B (hybrid thinking; enable_thinking=False writes an empty think block after the assistant opener).
# Source: huggingface/trl trl/chat_templates/qwen3.jinja, release 1.16.0.
QWEN3_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    '    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nY'
    'ou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and'
    ' arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-nam'
    'e>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    '    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and'
    " not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_re"
    "sponse>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n"
    "        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.content is string %}\n"
    "        {%- set content = message.content %}\n"
    "    {%- else %}\n"
    "        {%- set content = '' %}\n"
    "    {%- endif %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is string %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n"
    "        {%- else %}\n"
    "            {%- if '</think>' in content %}\n"
    "                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').spli"
    "t('<think>')[-1].lstrip('\\n') %}\n"
    "                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n"
    "        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.stri"
    "p('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "            {%- else %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "            {%- endif %}\n"
    "        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    '                {{- \'<tool_call>\\n{"name": "\' }}\n'
    "                {{- tool_call.name }}\n"
    '                {{- \'", "arguments": \' }}\n'
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}"
)

# Qwen2-*-Instruct (e.g. Qwen/Qwen2-7B-Instruct tokenizer_config.json "chat_template"): ChatML with the default
# system turn "You are a helpful assistant." when the conversation has none. No verbatim copy from Qwen's own
# repositories is stored here: this text is the one quoted unchanged in public training scripts that set a
# Qwen2 student's template (found with the code search), and it agrees with Qwen2's model card; re-check it
# against the hub when one is reachable.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

GEMMA_SPECIALS = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")
MISTRAL_SPECIALS = ("<s>", "</s>", "[INST]", "[/INST]")
PHI3_SPECIALS = ("<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
PHI4_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>")
DEEPSEEK_SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>")
LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
)
CHATML_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")

# The date Llama-3.1's template writes when no ``date_string`` is passed; Llama-3.2's template writes today's date
# (``strftime_now``) instead, so the presets and ``pieces_from_template`` pin this one for reproducible prompts.
LLAMA31_DEFAULT_DATE = "26 Jul 2024"


@dataclass(frozen=True)
class FamilyTemplate:
    """One official chat template and what rendering it needs.

    Attributes:
        name: short family name (a key of :data:`FAMILY_TEMPLATES`).
        model: the hub repository that ships this template.
        source: where the verbatim copy was taken from (repository, path, commit or release).
        chat_template: the Jinja text.
        preset: the harvest preset (``longmagpie.harvest.PRESETS``) that renders as this template.
        special_tokens: the template's special tokens (they must be single tokens of the tokenizer).
        bos_token: the tokenizer's BOS (``None`` where the model has none).
        eos_token: the tokenizer's EOS.
        end_of_turn: the token the template writes after an assistant message (generation stops on it).
        system_role: whether the template accepts a system message (Gemma 1/2 raise on one).
        template_kwargs: extra variables to render with (Qwen3's ``enable_thinking``, a fixed Llama date).

    """

    name: str
    model: str
    source: str
    chat_template: str
    preset: str
    special_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    end_of_turn: str
    system_role: bool = True
    template_kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


_TRL = "huggingface/trl trl/chat_templates/{} (release 1.16.0)"
_TRL_AT = "huggingface/trl trl/chat_templates/{} @ {}"
_LLAMACPP = "ggerganov/llama.cpp models/templates/{} @ 7b5e0803c84435e8005725d8f9ddceb5d1820443"

FAMILY_TEMPLATES: dict[str, FamilyTemplate] = {
    t.name: t
    for t in [
        FamilyTemplate(
            name="gemma2",
            model="google/gemma-2-2b-it (google/gemma-7b-it ships the same template)",
            source=_TRL.format("gemma.jinja"),
            chat_template=GEMMA_CHAT_TEMPLATE,
            preset="gemma",
            special_tokens=GEMMA_SPECIALS,
            bos_token="<bos>",
            eos_token="<eos>",
            end_of_turn="<end_of_turn>",
            system_role=False,
        ),
        FamilyTemplate(
            name="gemma3",
            model="google/gemma-3-4b-it",
            source=_TRL.format("gemma3.jinja"),
            chat_template=GEMMA3_CHAT_TEMPLATE,
            preset="gemma3",
            special_tokens=GEMMA_SPECIALS,
            bos_token="<bos>",
            eos_token="<eos>",
            end_of_turn="<end_of_turn>",
        ),
        FamilyTemplate(
            name="mistral-v0.3",
            model="mistralai/Mistral-7B-Instruct-v0.3",
            source=_TRL_AT.format("mistral.jinja", "4a56de4bd88d182856b8a92798cc285bd50d35f0"),
            chat_template=MISTRAL_V03_CHAT_TEMPLATE,
            preset="mistral",
            special_tokens=MISTRAL_SPECIALS,
            bos_token="<s>",
            eos_token="</s>",
            end_of_turn="</s>",
        ),
        FamilyTemplate(
            name="mistral-nemo",
            model="mistralai/Mistral-Nemo-Instruct-2407",
            source=_LLAMACPP.format("mistralai-Mistral-Nemo-Instruct-2407.jinja"),
            chat_template=MISTRAL_NEMO_CHAT_TEMPLATE,
            preset="mistral-nemo",
            special_tokens=MISTRAL_SPECIALS,
            bos_token="<s>",
            eos_token="</s>",
            end_of_turn="</s>",
        ),
        FamilyTemplate(
            name="phi3",
            model="microsoft/Phi-3-mini-4k-instruct",
            source=_TRL.format("phi3.jinja"),
            chat_template=PHI3_CHAT_TEMPLATE,
            preset="phi3",
            special_tokens=PHI3_SPECIALS,
            bos_token="<s>",
            eos_token="<|endoftext|>",
            end_of_turn="<|end|>",
        ),
        FamilyTemplate(
            name="phi3.5",
            model="microsoft/Phi-3.5-mini-instruct",
            source=_TRL.format("phi3_5.jinja")
            + "; identical to "
            + _LLAMACPP.format("microsoft-Phi-3.5-mini-instruct.jinja"),
            chat_template=PHI35_CHAT_TEMPLATE,
            preset="phi3.5",
            special_tokens=PHI3_SPECIALS,
            bos_token="<s>",
            eos_token="<|endoftext|>",
            end_of_turn="<|end|>",
        ),
        FamilyTemplate(
            name="phi4",
            model="microsoft/phi-4",
            source="ggml-org/llama.cpp tests/test-chat-template.cpp (test case 'phi-4') @ "
            "03f94f19a2c4c9d039fa1a84838fe3e2110cc28d",
            chat_template=PHI4_CHAT_TEMPLATE,
            preset="phi4",
            special_tokens=PHI4_SPECIALS,
            bos_token="<|endoftext|>",
            eos_token="<|im_end|>",
            end_of_turn="<|im_end|>",
        ),
        FamilyTemplate(
            name="deepseek-r1",
            model="deepseek-ai/DeepSeek-R1",
            source=_TRL.format("deepseekv3.jinja"),
            chat_template=DEEPSEEK_R1_CHAT_TEMPLATE,
            preset="deepseek-r1",
            special_tokens=DEEPSEEK_SPECIALS,
            bos_token="<｜begin▁of▁sentence｜>",
            eos_token="<｜end▁of▁sentence｜>",
            end_of_turn="<｜end▁of▁sentence｜>",
        ),
        FamilyTemplate(
            name="deepseek-r1-distill",
            model="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (every Qwen and Llama distill ships it)",
            source=_TRL.format("deepseek_r1_distill.jinja"),
            chat_template=DEEPSEEK_R1_DISTILL_CHAT_TEMPLATE,
            preset="deepseek-r1",
            special_tokens=DEEPSEEK_SPECIALS,
            bos_token="<｜begin▁of▁sentence｜>",
            eos_token="<｜end▁of▁sentence｜>",
            end_of_turn="<｜end▁of▁sentence｜>",
        ),
        FamilyTemplate(
            name="deepseek-v3.1",
            model="deepseek-ai/DeepSeek-V3.1",
            source="ggml-org/llama.cpp models/templates/deepseek-ai-DeepSeek-V3.1.jinja @ "
            "0374c5b6e4c19370262d93e2c3f2a98c9af9fe1f",
            chat_template=DEEPSEEK_V31_CHAT_TEMPLATE,
            preset="deepseek-v3.1",
            special_tokens=DEEPSEEK_SPECIALS,
            bos_token="<｜begin▁of▁sentence｜>",
            eos_token="<｜end▁of▁sentence｜>",
            end_of_turn="<｜end▁of▁sentence｜>",
        ),
        FamilyTemplate(
            name="llama3",
            model="meta-llama/Meta-Llama-3-8B-Instruct",
            source=_TRL.format("llama3.jinja"),
            chat_template=LLAMA3_OFFICIAL_CHAT_TEMPLATE,
            preset="llama3",
            special_tokens=LLAMA3_SPECIALS,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            end_of_turn="<|eot_id|>",
        ),
        FamilyTemplate(
            name="llama3.1",
            model="meta-llama/Llama-3.1-8B-Instruct",
            source=_TRL.format("llama3_1.jinja"),
            chat_template=LLAMA31_CHAT_TEMPLATE,
            preset="llama31",
            special_tokens=LLAMA3_SPECIALS,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            end_of_turn="<|eot_id|>",
        ),
        FamilyTemplate(
            name="llama3.2",
            model="meta-llama/Llama-3.2-1B-Instruct",
            source=_TRL.format("llama3_2.jinja")
            + "; identical to "
            + _LLAMACPP.format("meta-llama-Llama-3.2-3B-Instruct.jinja"),
            chat_template=LLAMA32_CHAT_TEMPLATE,
            preset="llama32",
            special_tokens=LLAMA3_SPECIALS,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            end_of_turn="<|eot_id|>",
            template_kwargs=MappingProxyType({"date_string": LLAMA31_DEFAULT_DATE}),
        ),
        FamilyTemplate(
            name="qwen2",
            model="Qwen/Qwen2-7B-Instruct",
            source="quoted verbatim in third-party training scripts (see QWEN2_CHAT_TEMPLATE); not from Qwen's repos",
            chat_template=QWEN2_CHAT_TEMPLATE,
            preset="qwen2",
            special_tokens=CHATML_SPECIALS,
            bos_token=None,
            eos_token="<|im_end|>",
            end_of_turn="<|im_end|>",
        ),
        FamilyTemplate(
            name="qwen3",
            model="Qwen/Qwen3-8B",
            source=_TRL.format("qwen3.jinja"),
            chat_template=QWEN3_CHAT_TEMPLATE,
            preset="qwen3",
            special_tokens=CHATML_SPECIALS,
            bos_token=None,
            eos_token="<|im_end|>",
            end_of_turn="<|im_end|>",
            template_kwargs=MappingProxyType({"enable_thinking": False}),
        ),
    ]
}
