-- Allocation-heavy Lua: strings, tables, closures, garbage collection.
local t = {}
for i = 1, 200000 do
  t[i] = string.format("%08d:%s", (i * 7919) % 100003, string.rep("x", i % 37))
end
table.sort(t)
local sum = 0
for i = 1, #t, 997 do sum = sum + #t[i] end
local m = {}
for i = 1, 50000 do
  local k = "k" .. (i % 5003)
  m[k] = (m[k] or 0) + i
end
local keys = {}
for k in pairs(m) do keys[#keys + 1] = k end
table.sort(keys)
local acc = 0
for _, k in ipairs(keys) do acc = (acc * 31 + m[k]) % 1000000007 end
local fs = {}
for i = 1, 10000 do fs[i] = function() return i * 2 end end
local s2 = 0
for i = 1, #fs do s2 = s2 + fs[i]() end
collectgarbage()
print(#t, t[1], t[#t], sum, #keys, acc, s2)
