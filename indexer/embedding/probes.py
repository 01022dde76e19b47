"""Questions and the Lua code that answers each: what `indexer.embedding.scale` embeds to see
where a model puts a matching and an unrelated (question, code) pair on its cosine scale.

Written for Victor, about no codebase in particular: small functions of the kinds Lua
projects hold (strings, tables, files, events, key bindings, caches, coroutines), each with a
question asked the way a developer asks it, not in the code's words.
"""

PROBES: tuple[tuple[str, str], ...] = (
    (
        "How do I read a whole file into a string?",
        """function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end""",
    ),
    (
        "Where are leading and trailing spaces removed from a string?",
        """local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end""",
    ),
    (
        "How is a table copied so that nested tables are copied too?",
        """function utils.deep_copy(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local out = {}
  seen[t] = out
  for k, v in pairs(t) do out[utils.deep_copy(k, seen)] = utils.deep_copy(v, seen) end
  return setmetatable(out, getmetatable(t))
end""",
    ),
    (
        "What happens when I press Ctrl+S?",
        """keymap["Ctrl-S"] = function(editor)
  if not editor.filename then return editor:save_as() end
  editor:write(editor.filename)
  editor.modified = false
end""",
    ),
    (
        "Why is my event handler called twice?",
        """function Emitter:on(name, handler)
  local list = self.handlers[name] or {}
  list[#list + 1] = handler
  self.handlers[name] = list
end

function Emitter:emit(name, ...)
  for _, handler in ipairs(self.handlers[name] or {}) do handler(...) end
end""",
    ),
    (
        "How does the cache decide which entry to throw away when it is full?",
        """function LRU:set(key, value)
  if self.size >= self.capacity then
    local oldest = self.tail
    self:unlink(oldest)
    self.items[oldest.key] = nil
    self.size = self.size - 1
  end
  local node = { key = key, value = value }
  self:push_front(node)
  self.items[key] = node
  self.size = self.size + 1
end""",
    ),
    (
        "Where is a comma separated line split into fields?",
        """local function split(line, sep)
  local fields = {}
  for field in (line .. sep):gmatch("(.-)" .. sep) do
    fields[#fields + 1] = field
  end
  return fields
end""",
    ),
    (
        "How do I wait for a timer without blocking the other tasks?",
        """function scheduler.sleep(seconds)
  local co = coroutine.running()
  timers[#timers + 1] = { at = clock() + seconds, co = co }
  return coroutine.yield()
end""",
    ),
    (
        "Why does my configuration file fail to load with a syntax error?",
        """function config.load(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then
    error("cannot parse " .. path .. ": " .. err)
  end
  local ok, result = pcall(chunk)
  if not ok then error("error in " .. path .. ": " .. result) end
  return result
end""",
    ),
    (
        "How are the items of a list sorted by more than one field?",
        """table.sort(players, function(a, b)
  if a.score ~= b.score then return a.score > b.score end
  return a.name < b.name
end)""",
    ),
    (
        "Where is the player's health reduced when they take damage?",
        """function Player:hurt(amount)
  if self.invulnerable then return end
  self.health = math.max(0, self.health - amount)
  if self.health == 0 then self:die() end
end""",
    ),
    (
        "How does the class system let a subclass call its parent's method?",
        """function Class:extend()
  local cls = {}
  for k, v in pairs(self) do
    if k:find("__") == 1 then cls[k] = v end
  end
  cls.__index = cls
  cls.super = self
  return setmetatable(cls, self)
end""",
    ),
    (
        "What happens when a request times out?",
        """local ok, err = sock:connect(host, port)
sock:settimeout(timeout)
local line, err = sock:receive("*l")
if not line then
  sock:close()
  return nil, "request failed: " .. err
end""",
    ),
    (
        "How is a number formatted with thousands separators?",
        """local function with_commas(n)
  local s = tostring(math.floor(n))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end""",
    ),
    (
        "Where are command line options parsed?",
        """local function parse_args(argv)
  local opts, files = {}, {}
  for _, a in ipairs(argv) do
    local key, value = a:match("^%-%-(%w+)=(.*)$")
    if key then opts[key] = value else files[#files + 1] = a end
  end
  return opts, files
end""",
    ),
    (
        "How do I check that a value is a positive integer?",
        """local function is_count(x)
  return type(x) == "number" and x > 0 and math.floor(x) == x
end""",
    ),
    (
        "Why are my log messages not written to the file?",
        """function Logger:log(level, msg)
  if LEVELS[level] < LEVELS[self.level] then return end
  self.file:write(os.date("%H:%M:%S "), level, " ", msg, "\\n")
  self.file:flush()
end""",
    ),
    (
        "How is JSON text turned into Lua tables?",
        """function json.decode(str)
  local value, pos = parse_value(str, skip_spaces(str, 1))
  pos = skip_spaces(str, pos)
  if pos <= #str then error("trailing garbage at " .. pos) end
  return value
end""",
    ),
    (
        "Where does the window get redrawn after it is resized?",
        """function Window:on_resize(width, height)
  self.width, self.height = width, height
  self.layout:update(width, height)
  self:invalidate()
  self:redraw()
end""",
    ),
    (
        "How are duplicate values removed from an array?",
        """function array.unique(list)
  local seen, out = {}, {}
  for _, v in ipairs(list) do
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  return out
end""",
    ),
    (
        "What happens to the undo history when I type a character?",
        """function Buffer:insert(pos, text)
  self.undo[#self.undo + 1] = { op = "delete", pos = pos, len = #text }
  self.redo = {}
  self.text = self.text:sub(1, pos - 1) .. text .. self.text:sub(pos)
end""",
    ),
    (
        "How does it find the path of a module from its name?",
        """local function search_path(name, path)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", name)
    if exists(file) then return file end
  end
end""",
    ),
    (
        "Why does the random level look the same every time I start the game?",
        """function love.load()
  math.randomseed(os.time())
  level = generate_level(WIDTH, HEIGHT)
end""",
    ),
    (
        "How is a password checked against the stored hash?",
        """function auth.verify(user, password)
  local record = users[user]
  if not record then return false end
  return hash(record.salt .. password) == record.hash
end""",
    ),
)
