-- Run busted inside the moonbus host: `moonbus run busted.lua SPEC...`.
-- The specs then test the real executable's library, not a separate build.
package.path = "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;" .. package.path
require "busted.runner" { standalone = false }
